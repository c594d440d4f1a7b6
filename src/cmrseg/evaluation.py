"""Evaluating a run folder (or a submission) against labeled masks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg.constants import STRUCTURES
from cmrseg.data.reader import Sample, load_folder, load_mask_folder
from cmrseg.errors import CmrsegError
from cmrseg.inference import load_run, predict_masks
from cmrseg.metrics import summarize
from cmrseg.submission import read_submission
from cmrseg.utils import write_json_atomic


def validation_samples(run_dir: str | Path) -> list[Sample]:
    """The run's own validation split, rebuilt from its saved config (same data, seed and fold)."""
    from cmrseg import runs
    from cmrseg.data.dataset import prepare_data

    config = runs.read_run_config(runs.require_run_dir(run_dir))
    val = prepare_data(config).val
    if not val:
        raise CmrsegError(f"{run_dir}: the run has no validation split (split_mode 'full'); pass --data DIR")
    return val


def score_samples(
    run_dir: str | Path,
    samples: list[Sample],
    checkpoint: str = "best",
    tta: bool | None = None,
    postprocess: bool | None = None,
    device: str = "auto",
    class_weights: list[float] | None = None,
    tta_scales: list[float] | None = None,
    engine: str = "torch",
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Predict labeled ``samples`` with a run and score them; returns the summary (with the TTA and
    clean-up settings used) and the predicted masks, for callers that also show them.
    ``tta``, ``tta_scales``, ``postprocess`` and ``class_weights`` override the run's own settings when given;
    ``engine`` is ``torch`` or ``onnxruntime``."""
    predictor, settings = load_run(run_dir, checkpoint=checkpoint, device=device, tta=tta, tta_scales=tta_scales,
                                   engine=engine)
    use_post = settings.postprocess if postprocess is None else postprocess
    weights = settings.class_weights if class_weights is None else class_weights
    preds = predict_masks(predictor, [s.image for s in samples], use_post, weights)
    summary = summarize([s.id for s in samples], preds, [s.mask for s in samples])  # type: ignore[misc]
    summary.update({"tta": settings.tta, "tta_scales": list(settings.tta_scales), "postprocess": use_post,
                    "class_weights": weights})
    return summary, preds


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    checkpoint: str = "best",
    tta: bool | None = None,
    postprocess: bool | None = None,
    device: str = "auto",
    tta_scales: list[float] | None = None,
    engine: str = "torch",
) -> dict[str, Any]:
    """Per-structure Dice and HD95 of a run on a labeled folder (default: its validation split); optionally saved as JSON."""
    samples = load_folder(data_dir, require_masks=True) if data_dir is not None else validation_samples(run_dir)
    summary, _ = score_samples(run_dir, samples, checkpoint=checkpoint, tta=tta, postprocess=postprocess, device=device,
                               tta_scales=tta_scales, engine=engine)
    summary.update({"engine": engine, "run": str(run_dir), "data": str(data_dir) if data_dir is not None else "validation split", "checkpoint": checkpoint})
    if json_path:
        write_json_atomic(json_path, summary)
    return summary


def score_submission(csv_path: str | Path, masks_dir: str | Path) -> dict[str, Any]:
    """Decode a submission CSV and compare it with the ground-truth masks of ``masks_dir``."""
    truths = load_mask_folder(masks_dir)
    decoded = read_submission(csv_path, {stem: mask.shape for stem, mask in truths.items()})
    stems = list(truths)
    if not stems:
        raise CmrsegError(f"{masks_dir}: no masks to score against")
    return summarize(stems, [decoded[s] for s in stems], [truths[s] for s in stems])


def _cell(value: float) -> str:
    return "   n/a" if math.isnan(value) else f"{value:6.3f}"


def format_table(summary: dict[str, Any]) -> str:
    """Plain-text table: one row per metric, one column per structure plus the mean."""
    columns = [*STRUCTURES, "mean"]
    lines = [f"{'metric':<10}" + "".join(f"{c:>8}" for c in columns)]
    for metric, label in (("dice", "Dice"), ("hd95", "HD95 px")):
        lines.append(f"{label:<10}" + "".join(f"  {_cell(summary[metric][c])}" for c in columns))
    lines.append(f"({summary['n_images']} images; Dice per image, absent-in-both = 1; HD95 mean over defined values)")
    return "\n".join(lines)
