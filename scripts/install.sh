#!/usr/bin/env bash
# Create .venv (if needed) and install digits into it with the given extras, e.g. `scripts/install.sh test`.
# torch is pinned to the CPU build first: an unpinned torch from PyPI is a CUDA build of several GB.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip 2>/dev/null || true
.venv/bin/python -m pip install --quiet -c requirements-cpu.txt "torch==2.13.0"
.venv/bin/python -m pip install --quiet -c requirements-cpu.txt -e ".[$extras]"
