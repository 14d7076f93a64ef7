#!/usr/bin/env bash
# Create .venv (if needed) and install digits into it with the given extras, e.g. `scripts/install.sh test`.
# torch is pinned to the CPU build first: an unpinned torch from PyPI is a CUDA build of several GB.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train}"
python="${PYTHON:-python3}"
say() { printf 'install: %s\n' "$*"; }
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv with $("$python" --version 2>&1)"
  "$python" -m venv .venv
fi
say "upgrading pip"
.venv/bin/python -m pip install --quiet --upgrade pip 2>/dev/null || true
say "torch 2.13.0, the CPU build (the largest step: up to a minute)"
.venv/bin/python -m pip install --quiet -c requirements-cpu.txt "torch==2.13.0"
say "digits and its dependencies for '$extras' (numpy, Pillow, OpenCV, onnxruntime, ...)"
.venv/bin/python -m pip install --quiet -c requirements-cpu.txt -e ".[$extras]"
say "done: $(.venv/bin/python -c 'import digits, torch; print("digits", digits.__version__, "with torch", torch.__version__)' 2>/dev/null || echo 'digits installed')"
