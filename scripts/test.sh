#!/usr/bin/env bash
# Install everything the tests need into .venv (and two Debian packages), then lint, type-check and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
# Debian packages the tests use: Chromium for the browser test (tests/test_serve_browser.py; Playwright downloads
# no browser) and Fashion-MNIST, the far-from-digits pictures of tests/test_trust.py and `digits report`.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test: installing Debian's ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
