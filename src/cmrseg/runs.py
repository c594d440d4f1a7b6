"""The run folder: its single owner. Training writes it through these functions; evaluate, predict,
ensemble, cv, sweep and report read it back through them.

    RUN_DIR/config.json          resolved config (all defaults filled in)
    RUN_DIR/normalization.json   intensity normalisation fitted on the training split (with config.json's
                                 model_info and plan.json: the input spec, :func:`read_input_spec`)
    RUN_DIR/data.json            what it was trained on: slices, patients, volumes, median voxel spacing (mm or null)
    RUN_DIR/plan.json            the plan it trained at and predicts at: spacing, patch, batch (:mod:`cmrseg.planning`)
    RUN_DIR/best.pt, last.pt     checkpoints (best by validation Dice; last for --resume)
    RUN_DIR/checkpoints/         periodic checkpoints every ``checkpoint_every`` epochs
    RUN_DIR/history.csv          one row per epoch, rewritten as the run goes
    RUN_DIR/loss_curve.png       train/val loss and val Dice curves
    RUN_DIR/qc_model.json        the fitted QC estimate, written by ``cmrseg qc calibrate`` (see :mod:`cmrseg.qc`)
    RUN_DIR/.cmrseg-output.json  marker: written by ``cmrseg train`` (see :mod:`cmrseg.io.outputs`)
    RUN_DIR/.cmrseg.lock         held while a training writes the folder (see :mod:`cmrseg.io.locks`)

A weights checkpoint (``best.pt``, ``checkpoints/epoch_NNNN.pt``) holds ``model`` (the state dict),
``model_info``, ``normalization`` and ``epoch`` (and ``val_dice`` when written by training); ``last.pt``
adds what a resume needs (optimiser, schedule, EMA/SWA, history).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from cmrseg.config import ExperimentConfig, ModelInfo, config_from_dict
from cmrseg.constants import STRUCTURES
from cmrseg.data.input_spec import InputSpec
from cmrseg.data.normalization import Normalization
from cmrseg.errors import CmrsegError
from cmrseg.formats.bundle import cache_entry, unpack_export
from cmrseg.io.atomic import torch_save_atomic, write_csv_atomic, write_json_atomic
from cmrseg.planning import Plan

CONFIG_FILE = "config.json"
NORMALIZATION_FILE = "normalization.json"
DATA_FILE = "data.json"
PLAN_FILE = "plan.json"
BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "history.csv"
CURVE_FILE = "loss_curve.png"
QC_FILE = "qc_model.json"
RUN_FILES = (CONFIG_FILE, NORMALIZATION_FILE, DATA_FILE, PLAN_FILE, BEST_CHECKPOINT, LAST_CHECKPOINT, CHECKPOINT_DIR, HISTORY_FILE,
             CURVE_FILE)
"""What a training writes into a run folder (outputs of other commands must not land on them)."""
EXPORT_REQUIRED = (CONFIG_FILE, NORMALIZATION_FILE, BEST_CHECKPOINT)
"""What an export zip must hold to serve as a run folder (:func:`require_run_dir`)."""

HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "val_loss", *[f"dice_{s}" for s in STRUCTURES], "dice_mean", "seconds"]
"""Columns of ``history.csv``, one row per finished epoch."""

RunState = Literal["new", "partial", "finished"]


def require_run_dir(run_dir: str | Path) -> Path:
    """Check that ``run_dir`` is a run folder and return it as a Path; an export zip is unpacked to one."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return unpack_export(run_dir, required=EXPORT_REQUIRED)
    if not run_dir.is_dir():
        raise CmrsegError(f"{run_dir}: run folder not found")
    if not (run_dir / CONFIG_FILE).is_file():
        raise CmrsegError(f"{run_dir}: not a run folder (no {CONFIG_FILE})")
    return run_dir


def run_inputs(run: str | Path) -> list[Path]:
    """What an output of a command reading the run ``run`` must stay out of (:func:`cmrseg.io.outputs.check_output_dir`):
    the run folder or export file and, for an export zip, its unpacked cache entry. Runs and caches are inputs."""
    run = Path(run)
    if run.is_file() and run.suffix.lower() != ".onnx":
        return [run, cache_entry(run)]
    return [run]


def read_run_config(run_dir: Path) -> ExperimentConfig:
    """The run's saved ``config.json``, validated."""
    path = run_dir / CONFIG_FILE
    try:
        return config_from_dict(json.loads(path.read_text()), source=str(path))
    except json.JSONDecodeError as err:
        raise CmrsegError(f"{path}: not valid JSON ({err.msg})") from None


def write_run_config(run_dir: Path, config: ExperimentConfig) -> None:
    """Write the run's resolved ``config.json`` atomically."""
    write_json_atomic(run_dir / CONFIG_FILE, config.model_dump(mode="json"))


def write_training_data(run_dir: Path, description: Mapping[str, Any]) -> None:
    """Write the run's ``data.json`` (:func:`describe_training_data`) atomically."""
    write_json_atomic(run_dir / DATA_FILE, dict(description))


def read_normalization(run_dir: Path) -> Normalization:
    """The run's ``normalization.json``, with a one-line error when it is missing (incomplete run) or corrupt."""
    path = run_dir / NORMALIZATION_FILE
    if not path.is_file():
        raise CmrsegError(f"{path}: missing; the run folder is incomplete")
    try:
        return Normalization.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CmrsegError(f"{path}: not a valid normalisation file ({type(err).__name__}: {err})") from None


def same_training(saved: ExperimentConfig, config: ExperimentConfig, extend_epochs: bool = False) -> bool:
    """Whether ``config`` trains what ``saved`` trained: the same training part (:class:`cmrseg.config.TrainingConfig`;
    ``epochs`` may differ with ``extend_epochs``). The prediction and runtime parts may change between them."""
    ignored = {"epochs"} if extend_epochs else set()
    return (saved.training.model_dump(mode="json", exclude=ignored)
            == config.training.model_dump(mode="json", exclude=ignored))


def epoch_checkpoint(epoch: int) -> str:
    """The periodic checkpoint of ``epoch``, relative to the run folder."""
    return f"{CHECKPOINT_DIR}/epoch_{epoch:04d}.pt"


def checkpoint_path(run_dir: Path, name: str) -> Path:
    """``best``, ``last`` or a file name inside the run folder as a path (``.pt`` added when missing)."""
    return run_dir / (name if name.endswith(".pt") else f"{name}.pt")


def save_weights(path: Path, model_state: Mapping[str, Any], model_info: ModelInfo, normalization: Normalization,
                 epoch: int, val_dice: float | None = None) -> None:
    """Write a weights checkpoint atomically: what evaluate, predict and ensembles load."""
    payload: dict[str, Any] = {"model": model_state, "epoch": epoch}
    if val_dice is not None:
        payload["val_dice"] = val_dice
    payload.update({"model_info": model_info.model_dump(), "normalization": normalization.to_dict()})
    torch_save_atomic(payload, path)


def save_training_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``last.pt`` atomically: the weights plus everything a resume restores."""
    torch_save_atomic(state, run_dir / LAST_CHECKPOINT)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a cmrseg checkpoint on the CPU with a one-line error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise CmrsegError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CmrsegError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CmrsegError(f"{path}: not a cmrseg checkpoint (no 'model' entry)")
    return checkpoint


def load_model_from_checkpoint(checkpoint_path: Path, model_info: ModelInfo, device: torch.device) -> nn.Module:
    """Build ``model_info``'s network and load the checkpoint, rejecting one made for another model."""
    from cmrseg.models.pretrained import check_state_dict
    from cmrseg.models.registry import build_model

    checkpoint = load_checkpoint(checkpoint_path)
    saved_name = (checkpoint.get("model_info") or {}).get("name")
    if saved_name and saved_name != model_info.name:
        raise CmrsegError(f"{checkpoint_path}: checkpoint is for model '{saved_name}', the run's config says '{model_info.name}'")
    model = build_model(model_info.model_copy(update={"pretrained": None}))
    check_state_dict(model, checkpoint["model"], str(checkpoint_path))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval()


def export_files(run_dir: Path, checkpoint: str, optional: Sequence[str], half: bool = False) -> dict[str, bytes]:
    """The run's files as an export carries them: ``config.json``, ``normalization.json``, the weights of
    ``checkpoint`` as ``best.pt`` without optimiser state (in float16 with ``half``), and each file of ``optional``
    the run has."""
    saved = load_checkpoint(checkpoint_path(run_dir, checkpoint))
    if half:
        saved["model"] = {k: v.half() if v.is_floating_point() else v for k, v in saved["model"].items()}
    weights = io.BytesIO()
    torch.save({k: saved[k] for k in ("model", "model_info", "normalization", "epoch", "val_dice") if k in saved}, weights)
    files = {CONFIG_FILE: (run_dir / CONFIG_FILE).read_bytes(), NORMALIZATION_FILE: (run_dir / NORMALIZATION_FILE).read_bytes(),
             BEST_CHECKPOINT: weights.getvalue()}
    files.update({name: (run_dir / name).read_bytes() for name in optional if (run_dir / name).is_file()})
    return files


def epochs_done(run_dir: Path) -> int:
    """Epochs a run folder holds: rows of ``history.csv`` beside a ``last.pt`` (0 for a fresh folder).

    The trainer writes ``history.csv`` after the checkpoints, so it never runs ahead of ``last.pt``.
    """
    return len(read_history(run_dir)) if (run_dir / LAST_CHECKPOINT).is_file() else 0


def run_state(run_dir: Path, epochs: int | None = None) -> RunState:
    """``new`` (no finished epoch), ``partial`` (short of ``epochs``) or ``finished``.

    ``epochs`` is the target; by default the run's own config's."""
    done = epochs_done(run_dir)
    if done == 0:
        return "new"
    target = read_run_config(run_dir).epochs if epochs is None else epochs
    return "finished" if done >= target else "partial"


def write_history(run_dir: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rewrite ``history.csv`` atomically with one row per epoch (:data:`HISTORY_COLUMNS`)."""
    write_csv_atomic(run_dir / HISTORY_FILE, rows, HISTORY_COLUMNS)


def read_history(run_dir: Path) -> list[dict[str, float]]:
    """Rows of ``history.csv`` as floats (empty list when the file is missing)."""
    path = run_dir / HISTORY_FILE
    if not path.is_file():
        return []
    with path.open() as handle:
        return [{k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()} for row in csv.DictReader(handle)]


def _optional_json(path: Path) -> dict[str, Any] | None:
    """The JSON in ``path``, None when there is no such file; invalid JSON is a one-line error."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CmrsegError(f"{path}: not valid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise CmrsegError(f"{path}: expected a JSON object of training counts and spacing")
    return data


def write_plan(run_dir: Path, plan: Plan) -> None:
    """Write the run's ``plan.json`` atomically."""
    write_json_atomic(run_dir / PLAN_FILE, plan.model_dump(mode="json"))


def read_plan(run_dir: Path) -> Plan | None:
    """The run's plan, or None for a run trained before plans (it predicts as it trained)."""
    from pydantic import ValidationError

    path = run_dir / PLAN_FILE
    if not path.is_file():
        return None
    try:
        return Plan.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as err:
        raise CmrsegError(f"{path}: not a valid plan ({type(err).__name__})") from None


def write_input_spec(run_dir: Path, spec: InputSpec) -> None:
    """Store the run's input spec (:mod:`cmrseg.data.input_spec`): its normalisation as ``normalization.json`` and its
    plan as ``plan.json``; its channel keys (``context_slices``, ``other_phase``, ``conditions``) are the config's
    ``model_info``, stored in ``config.json``, so every part has one file."""
    write_json_atomic(run_dir / NORMALIZATION_FILE, spec.normalization.to_dict())
    if spec.plan is not None:
        write_plan(run_dir, spec.plan)


def read_input_spec(run_dir: Path, config: ExperimentConfig | None = None) -> InputSpec:
    """The run's input spec: the channel keys of its config (``config``, default its ``config.json``), its
    ``normalization.json`` and its ``plan.json`` (None for a run trained before plans)."""
    config = config or read_run_config(run_dir)
    return InputSpec.from_config(config.model_info, read_normalization(run_dir), read_plan(run_dir))


def read_training_data(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``data.json`` (training counts and voxel spacing), or None for a run without one."""
    return _optional_json(run_dir / DATA_FILE)


def describe_training_data(samples: list[Any]) -> dict[str, Any]:
    """``data.json``: counts of the training slices, patients and volumes, and their median voxel spacing.

    The spacing is null unless every training slice comes from a volume whose header names it; prediction
    resamples inputs of another known spacing to it."""
    import numpy as np

    spacings = [s.spacing for s in samples]
    known = bool(spacings) and all(sp is not None for sp in spacings)
    return {
        "kind": "volumes" if any(s.volume is not None for s in samples) else "slices",
        "n_slices": len(samples),
        "n_volumes": len({s.volume for s in samples if s.volume is not None}),
        "n_patients": len({s.group for s in samples if s.group is not None}),
        "spacing": [float(v) for v in np.median(np.array(spacings, dtype=float), axis=0)] if known else None,
    }


def read_qc_model(run_dir: Path) -> dict[str, Any] | None:
    """The run's calibrated QC model (``qc_model.json``, :meth:`cmrseg.qc.QcModel.to_dict`), or None without one."""
    return _optional_json(run_dir / QC_FILE)


def write_qc_model(run_dir: Path, model: Mapping[str, Any]) -> Path:
    """Store the fitted QC model in the run folder, atomically (an earlier one is replaced); exports carry it."""
    path = run_dir / QC_FILE
    write_json_atomic(path, dict(model))
    return path
