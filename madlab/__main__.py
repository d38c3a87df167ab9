import sys

from madlab.cli import main

sys.exit(main())
