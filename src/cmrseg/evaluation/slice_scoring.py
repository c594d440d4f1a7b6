"""Evaluating a run folder on labeled slices (or a submission CSV) against masks; volumes go to :mod:`cmrseg.evaluation.volume_scoring`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg.constants import STRUCTURES
from cmrseg.data.readers.png import load_mask_folder
from cmrseg.data.slicing import Sample
from cmrseg.errors import CmrsegError
from cmrseg.inference import ModelPredictor, PredictSettings, load_run
from cmrseg.inference.predictor import predict_sample_masks
from cmrseg.metrics import summarize
from cmrseg.io.outputs import check_output_file
from cmrseg.workflows.submission import decode_submission
from cmrseg.io.atomic import write_json_atomic


def validation_samples(run_dir: str | Path) -> list[Sample]:
    """The run's own validation split, rebuilt from its saved config (same data, seed and fold).

    An ensemble's is its members' shared split; members validated on different splits are refused."""
    from cmrseg.data.dataset import prepare_data
    from cmrseg.workflows.ensemble import validation_config

    val = prepare_data(validation_config(run_dir)).val
    if not val:
        raise CmrsegError(f"{run_dir}: the run has no validation split (split_mode 'full'); give a labeled data folder",
                          key="data")
    return val


def score_samples(
    run_dir: str | Path,
    samples: list[Sample],
    settings: PredictSettings | None = None,
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Predict labeled ``samples`` with a run and score them; returns the summary (with the TTA and
    clean-up settings used) and the predicted masks, for callers that also show them.
    ``settings`` (default: the run's own) say how to predict; their None fields take the run's values."""
    predictor, resolved = load_run(run_dir, settings)
    return _score(predictor, resolved, samples)


def score_folder(
    run_dir: str | Path,
    data_dir: str | Path,
    settings: PredictSettings | None = None,
) -> tuple[dict[str, Any], list[Sample], list[np.ndarray]]:
    """:func:`score_samples` on a labeled PNG folder, read with the loaded run's own context slices (so the run is
    loaded once); returns the summary, the samples read and their predicted masks."""
    predictor, resolved = load_run(run_dir, settings)
    samples = predictor.spec.read_samples(data_dir)
    summary, preds = _score(predictor, resolved, samples)
    return summary, samples, preds


def _score(predictor: ModelPredictor, resolved: PredictSettings, samples: list[Sample]
           ) -> tuple[dict[str, Any], list[np.ndarray]]:
    preds = predict_sample_masks(predictor, samples, bool(resolved.postprocess), resolved.class_weights)
    summary = summarize([s.id for s in samples], preds, [s.mask for s in samples])  # type: ignore[misc]
    summary.update(resolved.summary())
    return summary, preds


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    settings: PredictSettings | None = None,
    qc_reference: str | Path | None = None,
) -> dict[str, Any]:
    """Per-structure Dice and HD95 of a run on a labeled folder (default: its validation split), predicted
    with ``settings`` (default: the run's own); optionally saved as JSON.

    On NIfTI volumes (or, without ``data_dir``, for a run trained on volumes) the scores are per volume, with
    ED/ES summaries, slice positions, clinical indices and quality control (see
    :mod:`cmrseg.evaluation.volume_scoring`; ``qc_reference``: :mod:`cmrseg.qc.reference`)."""
    from cmrseg.evaluation.volume_scoring import evaluate_run_on_volumes, is_volume_evaluation
    from cmrseg.qc.reference import refuse_for_slices

    settings = settings or PredictSettings()
    if json_path:
        from cmrseg import runs

        inputs = [Path(run_dir) / name for name in runs.RUN_FILES] + ([data_dir] if data_dir is not None else [])
        check_output_file(json_path, inputs=inputs)
    if is_volume_evaluation(run_dir, data_dir):
        summary = evaluate_run_on_volumes(run_dir, data_dir, settings, qc_reference=qc_reference)
    else:
        refuse_for_slices(data_dir or run_dir, qc_reference)
        summary = (score_folder(run_dir, data_dir, settings)[0] if data_dir is not None
                   else score_samples(run_dir, validation_samples(run_dir), settings)[0])
    summary.update({"engine": settings.engine, "run": str(run_dir),
                    "data": str(data_dir) if data_dir is not None else "validation split", "checkpoint": settings.checkpoint})
    if json_path:
        write_json_atomic(json_path, summary)
    return summary


def score_submission(csv_path: str | Path, masks_dir: str | Path, allow_partial: bool = False) -> dict[str, Any]:
    """Decode a submission CSV and compare it with the ground-truth masks of ``masks_dir``.

    Every mask must have its three rows and every row its mask (see :func:`cmrseg.workflows.submission.decode_submission`); with
    ``allow_partial`` only the complete masks are scored and the summary's ``partial`` says what was left out."""
    truths = load_mask_folder(masks_dir)
    if not truths:
        raise CmrsegError(f"{masks_dir}: no masks to score against")
    decoded, partial = decode_submission(csv_path, {stem: mask.shape for stem, mask in truths.items()}, allow_partial)
    stems = [stem for stem in truths if stem in decoded]
    summary = summarize(stems, [decoded[s] for s in stems], [truths[s] for s in stems])
    if allow_partial:
        summary["partial"] = partial
    return summary


def partial_text(summary: dict[str, Any]) -> str:
    """One line saying what a partial score left out (empty when nothing was)."""
    partial = summary.get("partial")
    if not partial:
        return ""
    return (f"partial score: {summary['n_images']} of {partial['masks']} masks scored; {partial['missing_masks']} "
            f"masks lack rows ({partial['missing_rows']} rows missing), {partial['unknown_rows']} rows have no true mask")


def _cell(value: float) -> str:
    return "   n/a" if math.isnan(value) else f"{value:6.3f}"


def format_table(summary: dict[str, Any]) -> str:
    """Plain-text table: one row per metric, one column per structure plus the mean (none for the counts)."""
    columns = [*STRUCTURES, "mean"]
    lines = [f"{'metric':<10}" + "".join(f"{c:>8}" for c in columns)]
    for metric, label in (("dice", "Dice"), ("hd95", "HD95 px")):
        lines.append(f"{label:<10}" + "".join(f"  {_cell(summary[metric][c])}" for c in columns))
    for metric, label in (("misses", "misses"), ("false_detections", "false det")):
        counts = [summary[metric][name] for name in STRUCTURES]
        lines.append(f"{label:<10}" + "".join(f"{count:>8d}" for count in counts) + f"{'':>8}")
    lines.append(f"({summary['n_images']} images; Dice per image, absent-in-both = 1; HD95 of a structure in only "
                 "one of prediction and truth = image diagonal; misses: in truth, not predicted; "
                 "false det: predicted, not in truth)")
    return "\n".join(lines)
