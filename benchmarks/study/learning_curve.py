"""Issue #5: CV Dice against the number of training slices, from finished cross-validation folders.

Each folder is a 5-fold ``cmrseg cv`` of one ``train_fraction`` (same split seed, so the same held-out
slices); its ``cv.json`` must hold the pooled score of every fold (``benchmarks/study/ablation.py --only NAME
--folds 0 1 2 3 4`` writes it). Prints a Markdown table (pooled and per-fold mean Dice, gain per doubling)
and draws Dice per structure against training slices on a log axis.

    .venv/bin/python benchmarks/study/learning_curve.py runs/acc/cv_x2_train_quarter runs/acc/cv_x2_train_half \
        runs/acc/cv_final_x2 --out benchmarks/study/results/learning_curve.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from cmrseg import runs
from cmrseg.constants import STRUCTURES
from cmrseg.data.dataset import prepare_data
from cmrseg.training.trainer import clone_config


def training_slices(cv_dir: Path, folds: int) -> float:
    """Mean number of training slices per fold of a CV folder (after its ``train_fraction``)."""
    config = runs.read_run_config(cv_dir)
    return float(np.mean([len(prepare_data(clone_config(config, folds=folds, fold=k)).train) for k in range(folds)]))


def read_point(cv_dir: Path) -> dict:
    """Pooled Dice per structure, per-fold mean Dice and training slices of one CV folder."""
    saved = json.loads((cv_dir / "cv.json").read_text())
    fold_rows = [row for row in saved["rows"] if row["fold"] != "mean"]
    if len(fold_rows) != saved["folds"]:
        raise SystemExit(f"{cv_dir}/cv.json: scores {len(fold_rows)} of {saved['folds']} folds; re-score all folds first")
    return {"name": cv_dir.name, "slices": training_slices(cv_dir, saved["folds"]), "dice": saved["mean"]["dice"],
            "folds": [row["dice_mean"] for row in fold_rows]}


def plot(points: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    slices = [p["slices"] for p in points]
    for key in (*STRUCTURES, "mean"):
        ax.plot(slices, [p["dice"][key] for p in points], marker="o", lw=2.5 if key == "mean" else 1.2, label=key)
    for p in points:
        ax.scatter([p["slices"]] * len(p["folds"]), p["folds"], s=10, color="gray", alpha=0.6, zorder=0)
    ax.axhline(0.92, color="black", ls="--", lw=1, label="issue #5 target 0.92")
    ax.set_xscale("log", base=2)
    ax.set_xticks(slices, [f"{s:.0f}" for s in slices])
    ax.set_xlabel("training slices per fold (log scale)")
    ax.set_ylabel("5-fold CV Dice (held-out slices)")
    ax.set_title("Learning curve of the recipe (grey: each fold's mean Dice)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv_dirs", nargs="+", type=Path, help="CV folders, from the fewest training slices to the most")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/study/results/learning_curve.png"))
    args = parser.parse_args()
    points = sorted((read_point(d) for d in args.cv_dirs), key=lambda p: p["slices"])
    print("| CV folder | training slices | RV | Myo | LV | mean | per-fold mean Dice | gain per doubling |")
    print("|---|---|---|---|---|---|---|---|")
    previous = None
    for p in points:
        gain = ""
        if previous is not None:
            gain = f"{(p['dice']['mean'] - previous['dice']['mean']) / math.log2(p['slices'] / previous['slices']):+.3f}"
        folds = " / ".join(f"{d:.3f}" for d in p["folds"])
        print(f"| {p['name']} | {p['slices']:.0f} | {p['dice']['RV']:.3f} | {p['dice']['Myo']:.3f} | {p['dice']['LV']:.3f} | "
              f"{p['dice']['mean']:.3f} | {folds} | {gain} |")
        previous = p
    plot(points, args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
