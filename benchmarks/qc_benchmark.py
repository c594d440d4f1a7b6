"""Issue #27: how well per-case quality control predicts per-volume Dice and flags bad cases, on acdc96.

    nice -n 10 python benchmarks/qc_benchmark.py [--data ../shared/data/acdc96] [--runs runs/qc_bench] [--folds 5]

1. Trains ``cmrseg cv`` (patient-wise ``--folds`` folds) of a small, fast U-Net (depth 3, 8 features, 12 epochs,
   a checkpoint after every epoch) on acdc96: resumed or skipped when already there.
2. Predicts every fold's held-out volumes (flip TTA on) with the weights after epochs :data:`STAGES`: a pool with a
   wide spread of quality, each volume with its QC signals (:mod:`cmrseg.qc`) and its true Dice.
3. Cross-validates the QC regressor by patient (the same folds: a volume's estimate comes from a regressor fitted
   on the other folds' patients only) and reports correlation, MAE, sensitivity/specificity/ROC AUC at flagging
   volumes with true mean Dice < 0.80 or an LV EF error > 10 points, the share flagged on the final model alone,
   and the cost of QC at prediction time (ratio to prediction without it).
4. Writes ``benchmarks/results/qc_benchmark.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from cmrseg.config import apply_overrides, load_config
from cmrseg.crossval import cross_validate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
EPOCHS = 12
STAGES = (1, 2, 4, 12)
"""Epochs whose weights predict the pool (12 = the final model)."""
SMALL = {"epochs": EPOCHS, "checkpoint_every": 1, "threads": 1, "tta": False, "tta_scales": [1.0],
         "model_info": {"name": "UNet", "input_channels": 1, "depths": 3, "features": 8, "input_scale": 1}}
"""configs/acdc.json made small and fast: depth 3, 8 features, no input up-sampling, 12 epochs, every epoch saved."""


def train(data: Path, runs_dir: Path, folds: int) -> Any:
    """The k-fold runs of the small recipe (resumed or skipped when there)."""
    config = load_config(ROOT / "configs" / "acdc.json")
    config = apply_overrides(config, {"dataset_info.train_data_path": str(data), "split_mode": "auto",
                                      **{k: v for k, v in SMALL.items() if k != "model_info"}})
    config = config.model_copy(update={"model_info": config.model_info.model_validate(SMALL["model_info"])})
    return cross_validate(config, folds, runs_dir / "cv", progress=False), config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "acdc96")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "qc_bench")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--train-only", action="store_true")
    args = parser.parse_args(argv)
    started = time.time()
    train(args.data, args.runs, args.folds)
    print(f"trained in {(time.time() - started) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
