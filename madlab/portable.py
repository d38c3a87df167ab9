"""Portable CPU kernels: the same bits for the same run on every CPU of one architecture family.

numpy's OpenBLAS, torch's MKL, ATen's vectorised loops and oneDNN each pick their kernels for the CPU they
start on, so the same run gives last-bit-different numbers on two CPU models, and a run resumed on another
node of a heterogeneous cluster continues on other kernels than it began with. Each library honours an
environment variable that fixes its choice instead; it is read once, when the library loads, so it must be
in the process's environment before it starts (``madlab run --portable`` re-executes itself with it, and
hands it to every Ray worker through the job's ``runtime_env``).

What holds with it: a run computed on any x86-64 CPU with AVX2 (x86-64-v3: Intel Haswell 2013 and later,
AMD Zen and later), or on any aarch64 CPU, gives the bits it gives on any other CPU of that family, with the
same library versions and the same thread count (a run's thread count is ``resources.num_cpus``, on every
node). What does not: an x86-64 run vs an aarch64 run, and CPU vs GPU. The price: kernels newer than AVX2
(AVX-512, AMX) are not used.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys

from madlab.errors import ConfigError

#: the pinned environment per machine architecture
PORTABLE_ENV = {
    "x86_64": {
        "OPENBLAS_CORETYPE": "Haswell",   # numpy/scipy's bundled OpenBLAS (DYNAMIC_ARCH)
        "MKL_CBWR": "AVX2",               # torch's MKL BLAS/LAPACK: conditional numerical reproducibility
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2",    # torch's own vectorised CPU kernels
        "ONEDNN_MAX_CPU_ISA": "AVX2",     # torch's convolutions (oneDNN)
    },
    "aarch64": {
        "OPENBLAS_CORETYPE": "ARMV8",
        "ATEN_CPU_CAPABILITY": "default",
    },
}
#: the x86-64 instruction sets the pinned kernels need
_X86_NEEDS = ("avx2", "fma")


def machine() -> str:
    name = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(name, name)


def portable_env() -> dict[str, str]:
    """The pinned environment for this machine; ConfigError where madlab has none or the CPU cannot run it."""
    arch = machine()
    if arch not in PORTABLE_ENV:
        raise ConfigError(f"--portable: no portable kernel set for {arch} CPUs (known: {', '.join(PORTABLE_ENV)})")
    if arch == "x86_64":
        missing = [flag for flag in _X86_NEEDS if flag not in _cpu_flags()]
        if missing:
            raise ConfigError(f"--portable: this CPU lacks {', '.join(missing)}, which the portable x86-64 "
                              f"kernels (AVX2) need; run without --portable")
    return dict(PORTABLE_ENV[arch])


def is_portable(environ=None) -> bool:
    """Whether this process started with the pinned environment of its architecture."""
    environ = os.environ if environ is None else environ
    pinned = PORTABLE_ENV.get(machine())
    return bool(pinned) and all(environ.get(k) == v for k, v in pinned.items())


def compute_record() -> dict:
    """What a run's ``config.json`` records of the kernels its numbers come from (compared on resume)."""
    if is_portable():
        return {"kernels": "portable", "machine": machine(), "env": PORTABLE_ENV[machine()]}
    return {"kernels": "native"}


def compute_differences(stored: dict | None, current: dict) -> list[str]:
    """A portable run resumes only under the same pinned kernels; a native one anywhere (rounding only)."""
    stored = stored or {"kernels": "native"}
    if stored.get("kernels") != "portable" or stored == current:
        return []
    now = current.get("kernels")
    if now == "portable":
        return [f"portable kernels for {stored.get('machine')} -> {current.get('machine')}"]
    return [f"kernels portable -> {now} (resume with --portable)"]


def relaunch(argv: list[str], *, replace: bool) -> int:
    """Run ``madlab ARGV`` in a process started with the pinned environment: replace this process
    (``os.execve``, the console script) or wait for a child (an in-process caller)."""
    env = {**os.environ, **portable_env()}
    command = [sys.executable, "-m", "madlab", *argv]
    if replace:
        sys.stdout.flush(), sys.stderr.flush()
        os.execve(sys.executable, command, env)
    return subprocess.run(command, env=env).returncode


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    # no /proc (macOS): numpy knows the CPU's features (imported here: only on that path)
    from numpy._core._multiarray_umath import __cpu_features__

    return {name.lower() for name, present in __cpu_features__.items() if present}
