"""``cmrseg ensemble``: combine trained runs into one run folder that evaluate and predict accept."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cmrseg import runs
from cmrseg.cli import extension
from cmrseg.config import ExperimentConfig, ModelInfo, checked_tta_scales
from cmrseg.data.dataset import Normalization
from cmrseg.errors import CmrsegError
from cmrseg.models import build_model
from cmrseg.utils import atomic_dir, write_json_atomic

IDENTITY = Normalization("dataset", 0.0, 1.0)
"""The ensemble sees images scaled to [0, 1]; each member normalises them its own way."""


def _member_spec(run_dir: Path) -> dict[str, object]:
    folder = runs.require_run_dir(run_dir)
    config = runs.read_run_config(folder)
    normalization = json.loads((folder / runs.NORMALIZATION_FILE).read_text())
    return {"run": str(run_dir.resolve()), "model_info": config.model_info.model_dump(mode="json"), "normalization": normalization}


def make_ensemble(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    weights: list[float] | None = None,
    tta: bool = False,
    tta_scales: list[float] | None = None,
) -> Path:
    """Write a run folder whose model is the soft-voting ensemble of ``run_dirs`` (best weights of each).

    It predicts with ``tta`` (flips, at the zooms ``tta_scales``, default the first run's) by default."""
    paths = [Path(p) for p in run_dirs]
    if len(paths) < 2:
        raise CmrsegError("an ensemble needs at least 2 run folders")
    if weights is not None and len(weights) != len(paths):
        raise CmrsegError(f"--weights: got {len(weights)} weights for {len(paths)} runs")
    if tta_scales is not None:
        checked_tta_scales(tta_scales)
    first = runs.read_run_config(runs.require_run_dir(paths[0]))
    options = {"members": [{"run": str(p)} for p in paths], "weights": weights or [1.0] * len(paths)}
    model = build_model(ModelInfo(name="Ensemble", options=options))
    stored = {"members": [_member_spec(p) for p in paths], "weights": options["weights"]}
    config = ExperimentConfig(
        epochs=1, dataset_info=first.dataset_info, seed=first.seed, split_seed=first.split_seed,
        val_fraction=first.val_fraction, split_mode=first.split_mode, folds=first.folds, fold=first.fold,
        tta=tta, tta_scales=tta_scales or first.tta_scales, postprocess=first.postprocess,
        model_info=ModelInfo(name="Ensemble", options=stored),
    )
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        write_json_atomic(tmp / runs.CONFIG_FILE, config.model_dump(mode="json"))
        write_json_atomic(tmp / runs.NORMALIZATION_FILE, IDENTITY.to_dict())
        torch.save({"model": model.state_dict(), "model_info": config.model_info.model_dump(mode="json"),
                    "normalization": IDENTITY.to_dict(), "epoch": 0}, tmp / runs.BEST_CHECKPOINT)
    return out_dir


def _cmd_ensemble(args: argparse.Namespace) -> None:
    out = make_ensemble(args.runs, args.out, args.weights, tta=args.tta or args.tta_scales is not None,
                        tta_scales=args.tta_scales)
    print(f"wrote ensemble of {len(args.runs)} runs to {out}; use it with: cmrseg evaluate --run {out} --data DIR")


@extension
def _register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ensemble", help="soft-voting ensemble of trained runs, written as a run folder")
    parser.add_argument("runs", nargs="+", help="two or more run folders")
    parser.add_argument("--out", required=True, help="ensemble run folder to write")
    parser.add_argument("--weights", type=float, nargs="+", help="one weight per run (default: equal)")
    parser.add_argument("--tta", action="store_true", help="predict with flip TTA by default (at the first run's zooms)")
    parser.add_argument("--tta-scales", type=float, nargs="+", metavar="ZOOM",
                        help="zooms of that TTA, e.g. 0.9 1.0 1.1 (implies --tta; default: the first run's tta_scales)")
    parser.set_defaults(handler=_cmd_ensemble)
