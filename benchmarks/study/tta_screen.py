"""Issue #5: which test-time augmentations beyond flips help the CV fold models.

Every fold model of each given CV folder predicts its fold's held-out slices under a set of
geometric transforms (sub-pixel shifts, small rotations, scales; each also flipped), the softmax
of each is warped back and averaged; then RV-weighted argmax and largest-component clean-up, as
best.json predicts. One row per TTA set and CV folder, so each set is read across seeds.

    .venv/bin/python benchmarks/study/tta_screen.py runs/acc/cv_final_x2 runs/acc/cv_x2_seed1 runs/acc/cv_x2_seed2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from cmrseg import runs
from cmrseg.workflows.crossval import final_checkpoint, fold_dir
from cmrseg.data.dataset import prepare_data
from cmrseg.inference import IDENTITY, PredictSettings, Warp, load_run, to_masks, warp_average
from cmrseg.metrics import summarize
from cmrseg.training.trainer import clone_config

TTA_SETS: dict[str, list[Warp]] = {
    "flips": [IDENTITY],
    "flips+shift0.5": [IDENTITY] + [(0.0, 1.0, dx, dy) for dx, dy in ((0.5, 0), (-0.5, 0), (0, 0.5), (0, -0.5))],
    "flips+rot10": [IDENTITY, (10.0, 1.0, 0, 0), (-10.0, 1.0, 0, 0)],
    "flips+scale0.9/1.1": [IDENTITY, (0.0, 0.9, 0, 0), (0.0, 1.1, 0, 0)],
    "flips+rot10+scale": [IDENTITY, (10.0, 1.0, 0, 0), (-10.0, 1.0, 0, 0), (0.0, 0.9, 0, 0), (0.0, 1.1, 0, 0)],
    "flips+shift0.5+scale": [IDENTITY] + [(0.0, 1.0, dx, dy) for dx, dy in ((0.5, 0), (-0.5, 0), (0, 0.5), (0, -0.5))]
    + [(0.0, 0.9, 0, 0), (0.0, 1.1, 0, 0)],
    "flips+scale0.8-1.2": [IDENTITY] + [(0.0, s, 0, 0) for s in (0.8, 0.9, 1.1, 1.2)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv_dirs", nargs="+", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--sets", nargs="+", default=list(TTA_SETS), choices=list(TTA_SETS))
    parser.add_argument("--class-weights", default="1,2,1,1")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights = tuple(float(w) for w in args.class_weights.split(","))
    print("| CV folder | TTA | RV | Myo | LV | mean | HD95 mean |\n|---|---|---|---|---|---|---|")
    for cv_dir in args.cv_dirs:
        config = runs.read_run_config(cv_dir)
        masks: dict[str, list[np.ndarray]] = {name: [] for name in args.sets}
        ids, truths = [], []
        for k in range(args.folds):
            samples = prepare_data(clone_config(config, folds=args.folds, fold=k)).val
            settings = PredictSettings(tta=True, tta_scales=(1.0,), device="cpu", checkpoint=final_checkpoint(config))
            predictor, _ = load_run(fold_dir(cv_dir, k), settings)
            raw = np.stack([s.image for s in samples])[:, None]
            for name in args.sets:
                probs = warp_average(predictor.predict_flipped, raw, TTA_SETS[name]).cpu().numpy()
                masks[name] += to_masks(probs, weights, largest=True)
            ids += [s.id for s in samples]
            truths += [s.mask for s in samples]
        for name in args.sets:
            summary = summarize(ids, masks[name], truths)
            dice = summary["dice"]
            print(f"| {cv_dir.name} | {name} | {dice['RV']:.4f} | {dice['Myo']:.4f} | {dice['LV']:.4f} | "
                  f"{dice['mean']:.4f} | {summary['hd95']['mean']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
