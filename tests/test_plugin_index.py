"""``madlab generators`` reads the plugins' entry points and sources without importing them."""
from __future__ import annotations

import resource
import subprocess
import sys

from madlab.plugins import registry
from madlab.plugins.index import installed_plugins, read_plugin

_LIST = """
import sys
from madlab.cli import main
code = main(["generators"])
heavy = sorted(m for m in ("torch", "numpy", "pydantic", "madlab_generators.gan") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
sys.exit(code)
"""


def test_listing_imports_no_plugin_and_costs_well_under_a_second():
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", _LIST], capture_output=True, text=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY="
    names = [line.split()[0] for line in done.stdout.strip().splitlines()[:-1]]
    assert {"gaussian", "gmm", "gan", "flow", "ddpm"} <= set(names)
    # CPU time, not wall time: the shared machine's load does not inflate it (importing torch alone is > 1 s)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 1.0, f"madlab generators used {cpu:.2f} s of CPU"


def test_static_read_agrees_with_the_imported_classes():
    for info in installed_plugins():
        if registry.distributions().get(info.name) != "madlab":
            continue
        cls = registry.get_generator_class(info.name)
        assert info.problem is None
        assert info.data_kinds == tuple(sorted(cls.data_kinds)), info.name
        assert info.summary == cls.describe(), info.name


def test_static_read_of_unusual_plugins(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "plug_a.py").write_text(
        '"""x"""\nfrom madlab.plugins.generator import Generator\n\n'
        'class Base(Generator):\n    data_kinds = frozenset({"image"})\n\n'
        'class Gen(Base):\n    """Inherits its kinds.\n\n    More text."""\n    name = "a"\n')
    (tmp_path / "plug_b.py").write_text("try:\n    import optional_thing_not_installed\nexcept ImportError:\n    pass\n"
                                        "from madlab.plugins.generator import Generator\nclass Gen(Generator):\n    pass\n")
    (tmp_path / "plug_c.py").write_text("import json\nimport surely_not_installed_pkg.sub\n")
    a = read_plugin("a", "plug_a:Gen")
    assert (a.data_kinds, a.summary, a.problem) == (("image",), "Inherits its kinds.", None)
    b = read_plugin("b", "plug_b:Gen")  # imports guarded by try are optional; default kinds from the protocol
    assert (b.data_kinds, b.summary, b.problem) == (("vector",), "", None)
    assert "surely_not_installed_pkg" in read_plugin("c", "plug_c:Gen").problem
    assert "No module named 'plug_missing'" in read_plugin("d", "plug_missing:Gen").problem
    assert "no class 'Nope'" in read_plugin("e", "plug_a:Nope").problem


def test_curators_are_listed_statically_and_agree_with_the_imported_classes(capsys):
    from madlab.cli import main
    from madlab.plugins.registry import get_curator_class
    from madlab.plugins.index import GROUPS

    assert main(["curators"]) == 0
    listed = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.strip().splitlines()}
    assert {"best-of-k", "verify", "self-correct", "detector"} <= set(listed)
    for info in installed_plugins(GROUPS["curators"]):
        if info.name not in ("best-of-k", "verify", "self-correct", "detector"):
            continue  # a foreign curator is listed, not judged
        cls = get_curator_class(info.name)
        assert info.problem is None
        assert info.data_kinds == tuple(sorted(cls.data_kinds)), info.name
        assert listed[info.name] == ",".join(info.data_kinds)
