"""`--portable`: the same run gives the same bits whichever CPU kernels the machine would pick.

This machine impersonates another CPU's OpenBLAS kernels with OPENBLAS_CORETYPE (numpy's bundled OpenBLAS
honours it), as a heterogeneous cluster's other node would run them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from madlab.core import portable
from madlab.store.provenance import differences

pytestmark = pytest.mark.fp_exact

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"name": "portable", "seed": 0, "dataset": {"name": "gaussian", "dim": 10}, "generator": {"name": "gaussian"},
        "loop": {"scheme": "accumulate-subsample", "generations": 3, "n_real": 40, "n_synthetic": 40, "bias": 0.9},
        "metrics": {"k": 5}, "sweep": {"seed": [0, 1]}}


def other_kernel() -> str | None:
    """An OpenBLAS kernel this CPU runs other than its default (.ci/blas_kernels.py), or None."""
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "blas_kernels.py"), "1"], capture_output=True, text=True)
    return out.stdout.strip() or None


def madlab(tmp_path, out: str, *args, **env) -> subprocess.CompletedProcess:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    environ = {k: v for k, v in os.environ.items() if k not in portable.PORTABLE_ENV.get(portable.machine(), {})}
    return subprocess.run([sys.executable, "-m", "madlab", "run", str(spec), "--out", str(tmp_path / out), "--no-ray",
                           *args], capture_output=True, text=True, env={**environ, **env}, cwd=tmp_path)


def table(tmp_path, out: str) -> pd.DataFrame:
    return pd.read_parquet(tmp_path / out / "metrics.parquet")


def assert_portable_folder_refuses_a_native_resume(out: Path) -> None:
    """A portable run's folder, checked for a native resume (`madlab validate --out` without --portable,
    in a process started without the pinned environment): one line, exit 2, nothing written."""
    tmp_path = out.parent
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    refused = subprocess.run([sys.executable, "-m", "madlab", "validate", str(tmp_path / "spec.yaml"), "--out", str(out)],
                             capture_output=True, text=True,
                             env={k: v for k, v in os.environ.items()
                                  if k not in portable.PORTABLE_ENV.get(portable.machine(), {})})
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "kernels portable -> native (resume with --portable)" in lines[0], refused.stderr
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert after == before, "nothing is written"


@pytest.mark.skipif(portable.machine() not in portable.PORTABLE_ENV, reason="no portable kernel set for this CPU")
def test_portable_runs_give_the_same_bits_under_another_cpus_kernels(tmp_path):
    kernel = other_kernel()
    if kernel is None:
        pytest.skip("this CPU runs no OpenBLAS kernel but its default")
    for out, args, env in [("native", (), {}), ("native-other", (), {"OPENBLAS_CORETYPE": kernel}),
                           ("portable", ("--portable",), {}),
                           ("portable-other", ("--portable",), {"OPENBLAS_CORETYPE": kernel})]:
        done = madlab(tmp_path, out, *args, **env)
        assert done.returncode == 0, done.stderr[-2000:]
    # exact: same path — the pinned kernels are the same code whatever the host would have picked
    pd.testing.assert_frame_equal(table(tmp_path, "portable"), table(tmp_path, "portable-other"))
    record = json.loads(next((tmp_path / "portable-other" / "runs").glob("*/config.json")).read_text())
    assert record["compute"] == {"kernels": "portable", "machine": portable.machine(),
                                 "env": portable.PORTABLE_ENV[portable.machine()]}
    native = json.loads(next((tmp_path / "native" / "runs").glob("*/config.json")).read_text())
    assert native["compute"] == {"kernels": "native"}
    assert_portable_folder_refuses_a_native_resume(tmp_path / "portable")
    # Without --portable the two kernels round differently: this is what the pinning removes. (Two kernels
    # could round a spec alike on some CPU; then the comparison above is still exact, only less telling.)
    a, b = table(tmp_path, "native"), table(tmp_path, "native-other")
    if a.equals(b):
        pytest.skip(f"the default kernel and {kernel} round this spec alike here: the portable check was exact, "
                    f"but the native contrast shows nothing")
    assert (a.value - b.value).abs().max() < 1e-9  # different kernels: rounding only (tests/fp.py's bounds)


def test_compute_records_compare_only_portable_runs():
    native, pinned = {"kernels": "native"}, {"kernels": "portable", "machine": "x86_64", "env": {"A": "1"}}
    assert portable.compute_differences(None, native) == []  # folders written before the record existed
    assert portable.compute_differences(native, pinned) == []  # a native run may continue anywhere (rounding)
    assert portable.compute_differences(pinned, pinned) == []
    assert portable.compute_differences(pinned, native) == ["kernels portable -> native (resume with --portable)"]
    arm = {"kernels": "portable", "machine": "aarch64", "env": {"B": "1"}}
    assert portable.compute_differences(pinned, arm) == ["portable kernels for x86_64 -> aarch64"]
    stored = {"config": {}, "versions": {}, "compute": pinned}
    assert differences(stored, {"config": {}, "versions": {}, "compute": native})


def test_ray_workers_get_the_pinned_environment(monkeypatch):
    ray = pytest.importorskip("ray")
    from madlab.runner import ray_tasks

    if portable.machine() not in portable.PORTABLE_ENV:
        pytest.skip("no portable kernel set for this CPU")
    seen = {}
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    for key, value in portable.portable_env().items():
        monkeypatch.setenv(key, value)
    ray_tasks.init_ray("auto")
    assert seen["runtime_env"] == {"env_vars": portable.portable_env()}
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    seen.clear()
    ray_tasks.init_ray("auto")
    assert "runtime_env" not in seen


def test_portable_on_a_cpu_without_its_instructions_is_one_line_exit_2(monkeypatch, cli, write_spec, spec_factory):
    monkeypatch.setattr(portable, "machine", lambda: "x86_64")
    monkeypatch.setattr(portable, "_cpu_flags", lambda: {"sse2", "avx"})
    for key in portable.PORTABLE_ENV["x86_64"]:
        monkeypatch.delenv(key, raising=False)
    code, out, err = cli("run", write_spec(spec_factory()), "--portable", "--no-ray", "--out", "unused")
    assert code == 2 and err.strip().splitlines() == [
        "madlab: error: --portable: this CPU lacks avx2, fma, which the portable x86-64 kernels (AVX2) need; "
        "run without --portable"]
    assert not Path("unused").exists()
