#!/usr/bin/env bash
# Issue #2 acceptance: the shipped U-Net config on the real training data, evaluated on its validation split.
# Usage: bash benchmarks/unet_baseline.sh [RUN_DIR]   (needs ../shared/data/cmr96)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUN="${1:-runs/unet-baseline}"
rm -rf "$RUN"
/usr/bin/time -f "wall %e s" cmrseg train --config configs/unet.json --out "$RUN" --quiet
cmrseg evaluate --run "$RUN" --json "$RUN/val_metrics.json"
python - "$RUN" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(f"{sys.argv[1]}/history.csv")))
print(f"epochs {len(rows)}, median s/epoch {statistics.median(float(r['seconds']) for r in rows):.2f}")
PY
