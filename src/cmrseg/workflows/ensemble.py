"""Combine trained runs into one run folder that evaluate and predict accept (``cmrseg ensemble``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cmrseg import runs
from cmrseg.config import ExperimentConfig, ModelInfo, checked_tta_scales
from cmrseg.data.input_spec import InputSpec
from cmrseg.data.normalization import Normalization
from cmrseg.errors import CmrsegError
from cmrseg.io.outputs import atomic_dir, check_output_dir
from cmrseg.models.registry import wrap_network
from cmrseg.models.voting import ensemble_network
from cmrseg.planning import Plan

IDENTITY = Normalization("dataset", 0.0, 1.0)
"""The ensemble sees images scaled to [0, 1]; each member normalises them its own way."""


ENSEMBLE_FILES = (runs.CONFIG_FILE, runs.NORMALIZATION_FILE, runs.BEST_CHECKPOINT)


def validation_split(config: ExperimentConfig) -> dict[str, object]:
    """What decides a run's validation slices: data folders, split mode, split seed, folds/fold, fraction."""
    info = config.dataset_info
    return {"train_data_path": info.train_data_path, "val_data_path": info.val_data_path,
            "split_mode": config.split_mode, "split_seed": config.data_split_seed, "folds": config.folds,
            "fold": config.fold, "val_fraction": config.val_fraction, "group_pairs": config.group_pairs}


def _member_spec(run_dir: Path) -> dict[str, object]:
    folder = runs.require_run_dir(run_dir)
    config = runs.read_run_config(folder)
    normalization = runs.read_normalization(folder).to_dict()
    return {"run": str(run_dir.resolve()), "model_info": config.model_info.model_dump(mode="json"),
            "normalization": normalization, "split": validation_split(config)}


def ensemble_spec(run_dirs: list[Path], plan: Plan | None = None) -> InputSpec:
    """The ensemble's input spec, merged from its members' (:meth:`InputSpec.merged`: the widest ``context_slices``,
    ``other_phase`` if any member reads it, every condition a member takes), with the identity normalisation (each
    member normalises its part itself) and the members' shared ``plan``; each member is handed its own part
    (:func:`cmrseg.models.voting.member_channels`)."""
    return InputSpec.merged([runs.read_input_spec(runs.require_run_dir(run)) for run in run_dirs], IDENTITY, plan)


def _load_member(run_dir: Path) -> tuple[nn.Module, Normalization, ModelInfo]:
    """A member run's best network on the CPU, its normalisation and ``model_info``."""
    folder = runs.require_run_dir(run_dir)
    info = runs.read_run_config(folder).model_info
    model = runs.load_model_from_checkpoint(folder / runs.BEST_CHECKPOINT, info, torch.device("cpu"))
    return model, runs.read_normalization(folder), info


def member_splits(config: ExperimentConfig) -> list[tuple[str, dict[str, object] | None]]:
    """``(member run, its validation split)`` of an ensemble run's config; a split that an older ensemble
    did not record is read from the member's run folder, or None when that is gone."""
    result = []
    for member in config.model_info.options.get("members", []):
        split = member.get("split")
        run = Path(member["run"])
        if split is None and (run / runs.CONFIG_FILE).is_file():
            split = validation_split(runs.read_run_config(run))
        result.append((str(run), split))
    return result


def check_shared_split(run_dir: Path, config: ExperimentConfig) -> None:
    """Refuse to rebuild an ensemble's validation split unless every member was validated on the same slices."""
    splits = member_splits(config)
    unknown = [run for run, split in splits if split is None]
    if unknown:
        raise CmrsegError(f"{run_dir}: the validation split of member {unknown[0]} is unknown; give a labeled data folder",
                          key="data")
    differ = [run for run, split in splits[1:] if split != splits[0][1]]
    if differ:
        raise CmrsegError(f"{run_dir}: members were validated on different splits ({differ[0]} differs from "
                          f"{splits[0][0]}, {len(differ)} of {len(splits)} members differ), so some slices trained a "
                          "member; give a labeled data folder", key="data")


def validation_config(run_dir: str | Path) -> ExperimentConfig:
    """The saved config of a run (or export) whose validation split is to be rebuilt; for an ensemble, only when
    its members share one (:func:`check_shared_split`), for PNG slices and volumes alike."""
    config = runs.read_run_config(runs.require_run_dir(run_dir))
    if config.model_info.name == "Ensemble":
        check_shared_split(Path(run_dir), config)
    return config


def make_ensemble(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    weights: list[float] | None = None,
    tta: bool = False,
    tta_scales: list[float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a run folder whose model is the soft-voting ensemble of ``run_dirs`` (best weights of each).

    It predicts with ``tta`` (flips, at the zooms ``tta_scales``, default the first run's) by default.
    Each member's validation split is recorded with it. ``out_dir`` must lie outside every member and be
    new, empty, an earlier ensemble output, or ``overwrite`` (see :mod:`cmrseg.io.outputs`)."""
    paths = [Path(p) for p in run_dirs]
    check_output_dir(out_dir, "ensemble", overwrite=overwrite, inputs=paths, files=ENSEMBLE_FILES)
    if len(paths) < 2:
        raise CmrsegError("an ensemble needs at least 2 run folders")
    if weights is not None and len(weights) != len(paths):
        raise CmrsegError(f"weights: got {len(weights)} weights for {len(paths)} runs", key="weights")
    if tta_scales is not None:
        checked_tta_scales(tta_scales)
    first = runs.read_run_config(runs.require_run_dir(paths[0]))
    spec = ensemble_spec(paths, shared_plan(paths))
    inputs = spec.channel_keys()
    stored = {"members": [_member_spec(p) for p in paths], "weights": weights or [1.0] * len(paths)}
    info = ModelInfo(name="Ensemble", options=stored, **inputs)
    model = wrap_network(info, ensemble_network(info, [_load_member(p) for p in paths], stored["weights"]))
    config = ExperimentConfig(
        epochs=1, dataset_info=first.dataset_info, seed=first.seed, split_seed=first.split_seed,
        val_fraction=first.val_fraction, split_mode=first.split_mode, folds=first.folds, fold=first.fold,
        tta=tta, tta_scales=tta_scales or first.tta_scales, postprocess=first.postprocess,
        model_info=info,
    )
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, "ensemble") as tmp:
        runs.write_run_config(tmp, config)
        runs.write_input_spec(tmp, spec)
        runs.save_weights(tmp / runs.BEST_CHECKPOINT, model.state_dict(), config.model_info, IDENTITY, epoch=0)
    return out_dir


def shared_plan(paths: list[Path]) -> Plan | None:
    """The plan the members share (the first's), which the ensemble predicts at; members planned at different
    in-plane spacings cannot vote on one grid and are refused."""
    plans = [runs.read_plan(runs.require_run_dir(path)) for path in paths]
    spacings = [None if plan is None else plan.target_spacing for plan in plans]
    for path, spacing in zip(paths[1:], spacings[1:], strict=True):
        if spacing != spacings[0]:
            raise CmrsegError(f"{path}: predicts at {spacing} mm (plan.json), {paths[0]} at {spacings[0]} mm; ensemble "
                              "members must share one plan spacing")
    return plans[0]

