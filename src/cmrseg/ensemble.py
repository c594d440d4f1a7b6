"""Combine trained runs into one run folder that evaluate and predict accept (``cmrseg ensemble``)."""

from __future__ import annotations

from pathlib import Path

from cmrseg import runs
from cmrseg.config import ExperimentConfig, ModelInfo, checked_tta_scales
from cmrseg.data.normalization import Normalization
from cmrseg.errors import CmrsegError
from cmrseg.models import build_model
from cmrseg.utils import atomic_dir, write_json_atomic

IDENTITY = Normalization("dataset", 0.0, 1.0)
"""The ensemble sees images scaled to [0, 1]; each member normalises them its own way."""


def _member_spec(run_dir: Path) -> dict[str, object]:
    config = runs.read_run_config(runs.require_run_dir(run_dir))
    normalization = runs.read_normalization(run_dir).to_dict()
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
        runs.save_weights(tmp / runs.BEST_CHECKPOINT, model.state_dict(), config.model_info, IDENTITY, epoch=0)
    return out_dir

