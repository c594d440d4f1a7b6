"""Issue #5: where a cross-validated recipe still fails, from its CV folder.

Prints, for the held-out predictions of every fold (the config's TTA, clean-up and class weights):
the median slice Dice, how much of the shortfall from ``--target`` comes from RV Dice under 0.8,
the worst RV slices with their true and predicted RV areas; then, per fold, the RV area predicted
over the true RV area and the mean Dice on held-out and on the fold's own training slices.
``--class-weights 1,1,1,1`` scores the plain argmax instead of the config's weighting.

    .venv/bin/python benchmarks/study/failure_analysis.py runs/acc/cv_final_x2 --class-weights 1,1,1,1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from cmrseg import runs
from cmrseg.workflows.crossval import final_checkpoint, fold_dir
from cmrseg.data.dataset import kfold_split, prepare_data
from cmrseg.data.slicing import Sample, load_folder
from cmrseg.inference import ModelPredictor, PredictSettings, load_run, predict_masks
from cmrseg.metrics import summarize
from cmrseg.training.trainer import clone_config

RV = 1


def score(predictor: ModelPredictor, samples: list[Sample], postprocess: bool, weights: list[float] | None) -> tuple[dict, float]:
    """Summary of ``samples`` and the predicted-over-true RV area."""
    masks = predict_masks(predictor, [s.image for s in samples], postprocess, weights)
    truths = [s.mask for s in samples]
    ratio = sum(int((m == RV).sum()) for m in masks) / max(1, sum(int((t == RV).sum()) for t in truths))
    return summarize([s.id for s in samples], masks, truths), ratio  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv_dir", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--target", type=float, default=0.92)
    parser.add_argument("--class-weights", type=lambda text: tuple(map(float, text.split(","))),
                        help="override the config's postprocess.class_weights")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = runs.read_run_config(args.cv_dir)
    weights = list(args.class_weights) if args.class_weights else base.postprocess.class_weights
    everything = load_folder(base.dataset_info.train_data_path, require_masks=True)
    held_out, areas, fold_rows = [], {}, []
    for k in range(args.folds):
        config = clone_config(base, folds=args.folds, fold=k)
        predictor, _ = load_run(fold_dir(args.cv_dir, k),
                                PredictSettings(tta=base.tta, device="cpu", checkpoint=final_checkpoint(config)))
        val = prepare_data(config).val
        train_ids = set(kfold_split([s.id for s in everything], args.folds, k, base.data_split_seed, base.group_pairs)[0])
        val_summary, val_ratio = score(predictor, val, base.postprocess.largest_component, weights)
        train_summary, train_ratio = score(predictor, [s for s in everything if s.id in train_ids],
                                           base.postprocess.largest_component, weights)
        held_out += val_summary["per_image"]
        areas.update({s.id: int((s.mask == RV).sum()) for s in val})
        fold_rows.append((k, val_ratio, train_ratio, val_summary["dice"]["mean"], train_summary["dice"]["mean"]))
    mean = np.array([row["dice"]["mean"] for row in held_out])
    rv = np.array([row["dice"]["RV"] for row in held_out])
    weak_rv = rv < 0.8
    share = np.clip(args.target - rv, 0, None)[weak_rv].sum() / 3 / len(rv) / max(1e-9, args.target - mean.mean())
    print(f"{args.cv_dir} (class weights {weights}): {len(held_out)} held-out slices, mean Dice {mean.mean():.3f}, "
          f"median {np.median(mean):.3f}")
    print(f"{int(weak_rv.sum())} slices with RV Dice < 0.8 make {100 * share:.0f} % of the shortfall from {args.target}")
    worst = sorted(held_out, key=lambda row: row["dice"]["RV"])[: int(weak_rv.sum())]
    print("worst RV: " + ", ".join(f"{row['id']} {row['dice']['RV']:.2f} ({areas[row['id']]} px)" for row in worst))
    print("\n| fold | RV area predicted/true, held-out | same, training slices | mean Dice held-out | mean Dice training |")
    print("|---|---|---|---|---|")
    for k, val_ratio, train_ratio, val_dice, train_dice in fold_rows:
        print(f"| {k} | {val_ratio:.3f} | {train_ratio:.3f} | {val_dice:.3f} | {train_dice:.3f} |")


if __name__ == "__main__":
    main()
