#!/usr/bin/env bash
# Train a shipped model and package it into src/cmrseg/pretrained_models/ (catalog.json + zip); rerunning it resumes
# an interrupted training.
#   SHIPPED=main (default): acdc-native-unet, about 45 minutes of one CPU core (40 epochs of about 65 s).
#   SHIPPED=qc: acdc-native-unet-qc, the QC reference model (half width, 16 epochs), about 8 minutes on 2 cores.
# Usage: [SHIPPED=main|qc] bash scripts/make_pretrained.sh [ACDC_NATIVE_DIR] [RUN_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
case "${SHIPPED:-main}" in
  main) CONFIG=configs/pretrained_acdc_native.json CARD=configs/cards/acdc_native_unet.json NAME=pretrained_acdc_native ;;
  qc) CONFIG=configs/pretrained_acdc_native_qc.json CARD=configs/cards/acdc_native_unet_qc.json NAME=pretrained_acdc_native_qc ;;
  *) echo "make_pretrained.sh: SHIPPED=${SHIPPED}: expected main or qc" >&2; exit 2 ;;
esac
DATA="${1:-../shared/data/acdc_native}"
RUN="${2:-runs/$NAME}"
source scripts/setup_env.sh
if [ -f "$RUN/config.json" ]; then
  cmrseg train --out "$RUN" --resume
else
  cmrseg train --config "$CONFIG" --data "$DATA" --out "$RUN"
fi
python scripts/package_pretrained.py --run "$RUN" --card "$CARD"
