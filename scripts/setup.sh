#!/usr/bin/env bash
# Creates .venv in the checkout and installs confbounds with every extra.
# torch is pinned to 2.13.0 here (a CPU build); pyproject keeps the range loose.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[all,dev]" "torch==2.13.0"
# the kernels compiled ahead of time into confbounds/ (confbounds.aot): the first bound compiles nothing
# (needs a C compiler; without one the kernels are compiled just in time on first use, as before)
.venv/bin/python -m confbounds.aot build > /dev/null \
    || echo "setup.sh: kernels not compiled ahead of time; they will be compiled on first use" >&2
