"""Issue #5: cross-validated estimate of an ensemble, and what it costs at prediction time.

For each fold, the final-epoch weights of that fold in every given CV folder (same seed, so the same
patient split) predict the fold's held-out slices; their softmax (each with flip TTA when asked) is
averaged, then largest-component clean-up. Every slice is thus scored by models that never saw it,
unlike the deployable ``cmrseg cv --ensemble`` fold ensemble, which cannot be scored on this data.

    .venv/bin/python benchmarks/study/ensemble_cv.py runs/acc/cv_flip_aug runs/acc/cv_flip_dyn8_ds --tta --lcc

With one CV folder and several ``--class-weights`` it calibrates ``postprocess.class_weights`` instead:
each weighting of the same held-out probabilities gets a row.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from cmrseg import runs
from cmrseg.workflows.crossval import final_checkpoint, fold_dir
from cmrseg.data.dataset import prepare_data
from cmrseg.inference import PredictSettings, load_run, to_masks
from cmrseg.metrics import summarize
from cmrseg.training.trainer import clone_config


def parse_weights(text: str) -> tuple[float, ...]:
    """``"1,2,1,1"`` -> class weights (background, RV, Myo, LV) for the weighted argmax."""
    return tuple(float(value) for value in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv_dirs", nargs="+", type=Path, help="CV folders made with the same seed and folds")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only", type=int, nargs="+", help="score only these folds (default: all)")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--tta-scales", type=float, nargs="+", help="zooms of the TTA (default: each run's tta_scales)")
    parser.add_argument("--lcc", action="store_true")
    parser.add_argument("--class-weights", type=parse_weights, nargs="+", default=[(1.0, 1.0, 1.0, 1.0)],
                        help="score each of these postprocess.class_weights, e.g. 1,1,1,1 1,2,1,1")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = runs.read_run_config(args.cv_dirs[0])
    ids, probs, truths, seconds = [], [], [], 0.0
    selected = args.only or list(range(args.folds))
    for k in selected:
        samples = prepare_data(clone_config(base, folds=args.folds, fold=k)).val
        images = [s.image for s in samples]
        started = time.perf_counter()
        fold_probs = [np.zeros(0)] * len(images)
        for cv_dir in args.cv_dirs:
            config = runs.read_run_config(cv_dir)
            settings = PredictSettings(tta=args.tta, tta_scales=args.tta_scales, device="cpu",
                                       checkpoint=final_checkpoint(config))
            predictor, _ = load_run(fold_dir(cv_dir, k), settings)
            member = predictor.predict_proba(images)
            fold_probs = [m if p.size == 0 else p + m for p, m in zip(fold_probs, member, strict=True)]
        seconds += time.perf_counter() - started
        ids += [s.id for s in samples]
        probs += fold_probs
        truths += [s.mask for s in samples]
    members = " + ".join(d.name for d in args.cv_dirs)
    print(f"{members} (tta={args.tta}, zooms={args.tta_scales or 'per run'}, lcc={args.lcc}), {len(ids)} held-out slices, folds {selected}")
    print(f"prediction: {len(ids) / seconds:.1f} images/s incl. loading ({args.threads} threads)\n")
    print("| class weights | RV | Myo | LV | mean | HD95 mean |\n|---|---|---|---|---|---|")
    for weights in args.class_weights:
        masks = to_masks(probs, weights, largest=args.lcc)
        summary = summarize(ids, masks, truths)
        dice = summary["dice"]
        print(f"| {','.join(f'{w:g}' for w in weights)} | {dice['RV']:.4f} | {dice['Myo']:.4f} | {dice['LV']:.4f} | "
              f"{dice['mean']:.4f} | {summary['hd95']['mean']:.2f} |")


if __name__ == "__main__":
    main()
