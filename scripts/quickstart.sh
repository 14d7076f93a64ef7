#!/usr/bin/env bash
# The main job on a fresh machine: install, get MNIST (verified), train the default preset, evaluate it.
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-seed}"
bash scripts/install.sh train
out="runs/quickstart-$preset-$(date +%Y%m%d-%H%M%S)"
.venv/bin/digits data fetch
.venv/bin/digits train --preset "$preset" --out "$out"
.venv/bin/digits evaluate "$out"
echo
echo "Your model is in $out/model.safetensors (metadata: $out/run.json, pictures: $out/*.png)"
