"""The run folder: what a training writes and what evaluate/predict/ensemble read back.

    RUN_DIR/config.json          resolved config (all defaults filled in)
    RUN_DIR/normalization.json   intensity normalisation fitted on the training split
    RUN_DIR/best.pt, last.pt     checkpoints (best by validation Dice; last for --resume)
    RUN_DIR/checkpoints/         periodic checkpoints every ``checkpoint_every`` epochs
    RUN_DIR/history.csv          one row per epoch, rewritten as the run goes
    RUN_DIR/loss_curve.png       train/val loss and val Dice curves
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cmrseg.config import ExperimentConfig, config_from_dict
from cmrseg.errors import CmrsegError

CONFIG_FILE = "config.json"
NORMALIZATION_FILE = "normalization.json"
BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "history.csv"
CURVE_FILE = "loss_curve.png"


def require_run_dir(run_dir: str | Path) -> Path:
    """Check that ``run_dir`` is a run folder and return it as a Path; an export zip is unpacked to one."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        from cmrseg.export import unpack_export

        return unpack_export(run_dir)
    if not run_dir.is_dir():
        raise CmrsegError(f"{run_dir}: run folder not found")
    if not (run_dir / CONFIG_FILE).is_file():
        raise CmrsegError(f"{run_dir}: not a run folder (no {CONFIG_FILE})")
    return run_dir


def read_run_config(run_dir: Path) -> ExperimentConfig:
    path = run_dir / CONFIG_FILE
    try:
        return config_from_dict(json.loads(path.read_text()), source=str(path))
    except json.JSONDecodeError as err:
        raise CmrsegError(f"{path}: not valid JSON ({err.msg})") from None


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


def epochs_done(run_dir: Path) -> int:
    """Epochs a run folder holds: rows of ``history.csv`` beside a ``last.pt`` (0 for a fresh folder).

    The trainer writes ``history.csv`` after the checkpoints, so it never runs ahead of ``last.pt``.
    """
    return len(read_history(run_dir)) if (run_dir / LAST_CHECKPOINT).is_file() else 0


def read_history(run_dir: Path) -> list[dict[str, float]]:
    """Rows of ``history.csv`` as floats (empty list when the file is missing)."""
    import csv

    path = run_dir / HISTORY_FILE
    if not path.is_file():
        return []
    with path.open() as handle:
        return [{k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()} for row in csv.DictReader(handle)]
