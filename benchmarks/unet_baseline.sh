#!/usr/bin/env bash
# Issue #2 acceptance: the shipped U-Net config on the real training data, evaluated on its validation split.
# Usage: bash benchmarks/unet_baseline.sh [RUN_DIR]   (needs ../shared/data/cmr96)
# Writes benchmarks/results/unet_baseline.json with the commit and the machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUN="${1:-runs/unet-baseline}"
rm -rf "$RUN"
/usr/bin/time -f "wall %e s" cmrseg train --config configs/unet.json --out "$RUN" --quiet
cmrseg evaluate --run "$RUN" --json "$RUN/val_metrics.json"
python - "$RUN" <<'PY'
import csv, json, statistics, sys
from cmrseg.utils import write_results
rows = list(csv.DictReader(open(f"{sys.argv[1]}/history.csv")))
seconds = statistics.median(float(r['seconds']) for r in rows)
print(f"epochs {len(rows)}, median s/epoch {seconds:.2f}")
metrics = json.load(open(f"{sys.argv[1]}/val_metrics.json"))
print("wrote", write_results("benchmarks/results/unet_baseline.json",
                             {"epochs": len(rows), "median_seconds_per_epoch": round(seconds, 2), "validation": metrics}))
PY
