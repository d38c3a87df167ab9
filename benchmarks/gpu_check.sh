#!/usr/bin/env bash
# The GPU check as the GPU machine runs it (benchmarks/README.md has the exact device command):
# installs the bundle that ../shared/device/bundle.sh built into .device/ (when it is there), then
# runs benchmarks/gpu_check.py; everything lands in OUTDIR (gpu_check.json, summary.txt,
# gpu_check.log, nvidia-smi.txt: within the 8 files the machine sends back).
#   bash benchmarks/gpu_check.sh OUTDIR [--smoke] [--only STEP ...]
#   PYTHON=/path/to/venv/bin/python bash benchmarks/gpu_check.sh OUTDIR    # on a CPU machine
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_check.sh OUTDIR [gpu_check.py options]}; shift
mkdir -p "$out"; out=$(cd "$out" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -f .device/install.sh ] && ! python3 -c "import ray, diffusers, madlab" 2>/dev/null; then
  source .device/install.sh || { echo "gpu_check.sh: .device/install.sh failed" | tee "$out/gpu_check.log"; exit 1; }
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} RAY_USAGE_STATS_ENABLED=0
(nvidia-smi || echo "no nvidia-smi") > "$out/nvidia-smi.txt" 2>&1
"${PYTHON:-python3}" benchmarks/gpu_check.py "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
