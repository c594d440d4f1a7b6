#!/usr/bin/env bash
# One command for the demo: install, synthetic data, train, evaluate, predict, submission. Outputs in demo_out/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh
OUT=demo_out
rm -rf "$OUT"
echo "==> synthetic phantoms: 80 for training, 20 labeled for evaluation, 20 unlabeled to predict"
cmrseg data synth --out "$OUT/synth/train" --count 80 --seed 0
cmrseg data synth --out "$OUT/synth/val" --count 20 --seed 1
cmrseg data synth --out "$OUT/synth/test" --count 20 --seed 2 --no-masks
echo "==> training (configs/demo.json)"
cmrseg train --config configs/demo.json --out "$OUT/run"
echo "==> evaluating on held-out phantoms"
cmrseg evaluate --run "$OUT/run" --data "$OUT/synth/val" --json "$OUT/metrics.json"
echo "==> predicting the unlabeled phantoms (masks + overlays)"
cmrseg predict --run "$OUT/run" --images "$OUT/synth/test" --out "$OUT/predictions" --overlays
cmrseg submit --masks "$OUT/predictions" --out "$OUT/submission.csv"
echo "==> the submission decodes back to the predicted masks:"
cmrseg score --submission "$OUT/submission.csv" --masks "$OUT/predictions"
echo "==> hearts, not slices: ED/ES phantom volumes of 4 patients (NIfTI, ACDC layout, 1.6x1.6x8 mm)"
cmrseg data synth --volumes --out "$OUT/synth/volumes" --count 4 --seed 3
# --postprocess keeps each structure's largest 3D component: without it, stray RV blobs on the small apical and
# end-systolic slices (smaller hearts than any 2D phantom the demo trains on) made the RV EF come out ~44 points low.
cmrseg predict --run "$OUT/run" --images "$OUT/synth/volumes" --out "$OUT/volume_predictions" --overlays --indices --postprocess
cmrseg evaluate --run "$OUT/run" --data "$OUT/synth/volumes" --json "$OUT/volume_metrics.json" --postprocess
cmrseg indices --masks "$OUT/volume_predictions" --truth "$OUT/synth/volumes" --out "$OUT/indices/indices.csv"
echo "    (a small model that saw 80 mid-ventricular 2D phantoms for 12 epochs: the apical and end-systolic slices of"
echo "     these hearts are smaller than any it learned from, so expect EF errors of several points here; the recipes"
echo "     measured on real volumes are in BENCHMARKS.md)"
echo "==> the shipped model (no training, trained on real ACDC scans) on the same phantom volumes"
cmrseg predict --images "$OUT/synth/volumes" --out "$OUT/shipped_predictions" --indices --overlays
echo "    (these cartoon phantoms are unlike the real scans it learned from: quality control (cases.csv, qc_flag) should"
echo "     flag them 'check', as it would flag a real scan the model gets wrong; on real short-axis volumes see"
echo "     docs/shipped-model.md for its cross-validated accuracy)"
echo "demo finished: see $OUT/ (run/loss_curve.png, metrics.json, predictions/*_overlay.png, submission.csv,"
echo "  volume_predictions/*.nii.gz and *_overlay.png, volume_metrics.json, indices/indices*.csv and *_bland_altman.png,"
echo "  shipped_predictions/ with cases.csv and indices.csv)"
