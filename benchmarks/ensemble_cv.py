"""Issue #5: cross-validated estimate of an ensemble, and what it costs at prediction time.

For each fold, the final-epoch weights of that fold in every given CV folder (same seed, so the same
patient split) predict the fold's held-out slices; their softmax (each with flip TTA when asked) is
averaged, then largest-component clean-up. Every slice is thus scored by models that never saw it,
unlike the deployable ``cmrseg cv --ensemble`` fold ensemble, which cannot be scored on this data.

    .venv/bin/python benchmarks/ensemble_cv.py runs/acc/cv_flip_aug runs/acc/cv_flip_dyn8_ds --tta --lcc
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from cmrseg import runs
from cmrseg.crossval import final_checkpoint, fold_dir
from cmrseg.data.dataset import prepare_data
from cmrseg.inference import largest_component, load_run
from cmrseg.metrics import summarize
from cmrseg.training import clone_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv_dirs", nargs="+", type=Path, help="CV folders made with the same seed and folds")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only", type=int, nargs="+", help="score only these folds (default: all)")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--lcc", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = runs.read_run_config(args.cv_dirs[0])
    ids, preds, truths, seconds = [], [], [], 0.0
    selected = args.only or list(range(args.folds))
    for k in selected:
        samples = prepare_data(clone_config(base, folds=args.folds, fold=k)).val
        images = [s.image for s in samples]
        started = time.perf_counter()
        probs = [np.zeros(0)] * len(images)
        for cv_dir in args.cv_dirs:
            config = runs.read_run_config(cv_dir)
            predictor, _ = load_run(fold_dir(cv_dir, k), checkpoint=final_checkpoint(config), device="cpu", tta=args.tta)
            member = predictor.predict_proba(images)
            probs = [m if p.size == 0 else p + m for p, m in zip(probs, member, strict=True)]
        masks = [p.argmax(0).astype(np.uint8) for p in probs]
        masks = [largest_component(m) for m in masks] if args.lcc else masks
        seconds += time.perf_counter() - started
        ids += [s.id for s in samples]
        preds += masks
        truths += [s.mask for s in samples]
    summary = summarize(ids, preds, truths)
    dice, hd95 = summary["dice"], summary["hd95"]
    members = " + ".join(d.name for d in args.cv_dirs)
    print(f"{members} (tta={args.tta}, lcc={args.lcc}), {summary['n_images']} held-out slices, folds {selected}")
    print("Dice " + "  ".join(f"{k} {v:.4f}" for k, v in dice.items()))
    print("HD95 " + "  ".join(f"{k} {v:.2f}" for k, v in hd95.items()))
    print(f"prediction: {len(ids) / seconds:.1f} images/s incl. loading ({args.threads} threads)")


if __name__ == "__main__":
    main()
