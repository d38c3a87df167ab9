"""madlab installs as a user installs it: `pip install .` (not editable) into a fresh environment.

The installed distribution must carry the engine, the shipped plugins (import name
``madlab_generators``, which cannot collide with an unrelated top-level ``generators`` package)
and the loop specs (package data ``madlab.loops``), so ``madlab validate`` and ``madlab run``
with no argument work without the source tree.
"""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("gaussian", "gmm", "gan", "flow", "ddpm")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_is_listed():
    """Packages are listed explicitly (the plugin folder is mapped to another name), so a new
    subpackage that is not listed would be missing from a wheel."""
    setuptools = _pyproject()["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "madlab").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert setuptools["package-dir"]["madlab_generators"] == "generators"


def test_shipped_entry_points_use_the_distinct_import_name():
    entries = _pyproject()["project"]["entry-points"]["madlab.generators"]
    assert set(SHIPPED) <= set(entries)
    assert all(target.startswith("madlab_generators.") for target in entries.values())


def _tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in out.stdout.splitlines() if (ROOT / f).is_file()]


def _fresh_venv(venv: Path) -> Path:
    """A venv as a user makes it (``python -m venv``, no system site-packages), whose dependencies come from
    the running environment: a ``.pth`` file in its site-packages names this interpreter's site-packages.
    A ``.pth`` line only appends a folder to ``sys.path`` (that folder's own ``.pth`` files are not run), so
    an editable madlab installed there stays invisible, and the venv's own site-packages comes first.
    ``--system-site-packages`` would instead expose the *base* interpreter's packages when the tests run
    inside a venv, not the user's."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    parents = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(own) / "_madlab_test_parent.pth").write_text("\n".join(parents) + "\n")
    return python


def test_non_editable_install_in_a_fresh_venv(tmp_path):
    source = tmp_path / "src"
    for rel in _tracked_files():  # a copy, so the build leaves nothing in the checkout
        if rel.startswith(("tests/", "reports/figures/", "benchmarks/")):
            continue
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, source / rel)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_CONSTRAINT")}
    # The wheel is built offline with this environment's setuptools (the test extra pins setuptools>=68 and
    # wheel), then installed into the fresh venv without an index: no network is needed.
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(wheels), str(source)], capture_output=True, text=True, env=env,
                           cwd=tmp_path)
    assert build.returncode == 0, build.stderr[-2000:]
    venv = tmp_path / "venv"
    python = _fresh_venv(venv)
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                              *map(str, wheels.glob("madlab-*.whl"))], capture_output=True, text=True, env=env,
                             cwd=tmp_path)
    assert install.returncode == 0, install.stderr[-2000:]
    shutil.rmtree(source)  # nothing may depend on the source tree any more

    def madlab(*args):
        return subprocess.run([str(venv / "bin" / "madlab"), *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path)

    where = subprocess.run([str(python), "-c", "import madlab, madlab_generators; "
                            "print(madlab.__file__); print(madlab_generators.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert all(str(venv) in line for line in where.stdout.split()), where.stdout
    validate = madlab("validate")
    assert validate.returncode == 0, validate.stderr
    assert "quickstart.yaml" in validate.stdout and str(venv) in validate.stdout
    listed = madlab("generators")
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    assert set(SHIPPED) <= names
    assert "cannot load" not in listed.stdout
