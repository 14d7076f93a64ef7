#!/usr/bin/env bash
# Install everything the tests need into .venv (and Chromium), then lint, type-check and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
# The browser test (tests/test_serve_browser.py) drives Debian's Chromium; Playwright downloads no browser.
if ! command -v chromium >/dev/null 2>&1; then
  echo "test: installing Debian's chromium for the browser test"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  fi
fi
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
