#!/usr/bin/env bash
# GPU readiness check (issue 14): runs the tests marked `gpu` (tests/test_gpu.py) and a sampling and pipeline
# benchmark on the GPU (benchmarks/gpu_check.py), within 5 minutes, and writes one JSON file
# (default benchmarks/results/gpu_check.json; pass another path as the first argument).
# Without a GPU it says it skipped for lack of one and exits 0. Uses the project venv (.venv, see
# scripts/setup.sh), as scripts/test.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    echo "gpu_check: .venv/bin/python not found; create the project venv first: bash scripts/setup.sh" >&2
    exit 2
fi
OUT=${1:-benchmarks/results/gpu_check.json}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout --kill-after=10 295 .venv/bin/python benchmarks/gpu_check.py --out "$OUT"
