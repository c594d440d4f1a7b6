#!/usr/bin/env bash
# Train the shipped model acdc-native-unet and package it into src/cmrseg/pretrained_models/ (catalog.json + zip).
# About 45 minutes of one CPU core (40 epochs of about 65 s); rerunning it resumes an interrupted training.
# Usage: bash scripts/make_pretrained.sh [ACDC_NATIVE_DIR] [RUN_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA="${1:-../shared/data/acdc_native}"
RUN="${2:-runs/pretrained_acdc_native}"
source scripts/setup_env.sh
if [ -f "$RUN/config.json" ]; then
  cmrseg train --out "$RUN" --resume
else
  cmrseg train --config configs/pretrained_acdc_native.json --data "$DATA" --out "$RUN"
fi
python scripts/package_pretrained.py --run "$RUN" --card configs/cards/acdc_native_unet.json
