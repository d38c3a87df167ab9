"""Print the OpenBLAS kernels (OPENBLAS_CORETYPE values) this CPU can run, other than its default.

numpy's bundled OpenBLAS is built with DYNAMIC_ARCH: it picks a kernel for the CPU at start-up and honours
OPENBLAS_CORETYPE, so one machine can impersonate another CPU's kernels (within the instruction sets it
has). Each candidate is tried in a child process (one that needs instructions this CPU lacks dies with
SIGILL) and kept when OpenBLAS reports running exactly that kernel. Usage: python .ci/blas_kernels.py [N]
prints up to N (default 2) names, one per line, newest instruction set first.
"""
from __future__ import annotations

import os
import subprocess
import sys

CANDIDATES = {  # newest first, per architecture
    "x86_64": ["SkylakeX", "Cooperlake", "Zen", "Haswell", "Sandybridge", "Nehalem", "Core2"],
    "aarch64": ["NeoverseV1", "NeoverseN1", "CortexA72", "CortexA57", "ARMV8"],
}
PROBE = ("import numpy, threadpoolctl; a = numpy.arange(64.0).reshape(8, 8); a @ a; "
         "print([i['architecture'] for i in threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas'][0])")


def running_kernel(coretype: str | None) -> str | None:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env)
    return out.stdout.strip() if out.returncode == 0 else None


def main() -> None:
    want = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    default = running_kernel(None)
    found = []
    for name in CANDIDATES.get(os.uname().machine, []):
        got = running_kernel(name)
        if got and got.lower() == name.lower() and got != default:
            found.append(name)
    print(f"default kernel: {default}; others this CPU runs: {', '.join(found) or 'none'}", file=sys.stderr)
    print("\n".join(found[:want]))


if __name__ == "__main__":
    main()
