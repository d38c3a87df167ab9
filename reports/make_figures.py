"""Draw the MAD figures of one or more results folders (the same code as ``madlab report``).

    python reports/make_figures.py                         # every results/fig*/ folder
    python reports/make_figures.py results/fig10_gaussian  # chosen folders
    python reports/make_figures.py --copy-to reports/figures

Each folder gets DIR/figures/*.png, *.pdf and index.html. ``--copy-to`` also copies the PNGs,
reduced to a 256-colour palette (plots lose nothing visible, files shrink ~3x), into
COPY_TO/<folder name>/ — how the figures committed under reports/figures/ were made.
Exit code 2 (one line on stderr) for a folder that is not a results folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from madlab.core.errors import MadlabError
from madlab.report import make_report

ROOT = Path(__file__).resolve().parent.parent


def small_png(src: Path, dst: Path) -> None:
    from PIL import Image

    with Image.open(src) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", help="results folders (default: results/fig*/)")
    parser.add_argument("--copy-to", type=Path, help="also copy palette-reduced PNGs into COPY_TO/<folder>/")
    args = parser.parse_args(argv)
    dirs = [Path(d) for d in args.dirs] or sorted(p for p in (ROOT / "results").glob("fig*") if p.is_dir())
    if not dirs:
        print("make_figures: no results/fig*/ folders; run a spec first (see reports/README.md)", file=sys.stderr)
        return 2
    for folder in dirs:
        try:
            written = make_report(str(folder))
        except MadlabError as exc:
            print(f"make_figures: error: {exc}", file=sys.stderr)
            return 2
        pngs = [Path(p) for p in written if p.endswith(".png")]
        print(f"{folder}: {len(pngs)} figures, index {folder / 'figures' / 'index.html'}")
        if args.copy_to:
            target = args.copy_to / folder.name
            target.mkdir(parents=True, exist_ok=True)
            for old in target.glob("*.png"):
                old.unlink()
            for png in pngs:
                small_png(png, target / png.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
