"""Evaluating a run on labeled volumes: per-volume 3D metrics, ED/ES summaries, slice positions, clinical indices.

``evaluate_volumes`` predicts every volume (see :mod:`cmrseg.inference.volume_prediction`), scores it with
:mod:`cmrseg.metrics.volumes`, and compares the clinical indices of the predicted label volumes with those of
the true ones (:mod:`cmrseg.metrics.clinical`). The result is one JSON-ready dictionary; ``format_volume_report``
prints it as plain-text tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg.metrics.clinical import PhaseLabel, agreement, format_agreement, indices_table
from cmrseg.config import ExperimentConfig
from cmrseg.constants import STRUCTURES
from cmrseg.data.readers import Volume, list_cases, load_volume, read_volumes, reads_stacks
from cmrseg.errors import CmrsegError
from cmrseg.inference import PredictSettings, Predictor
from cmrseg.inference.volume_prediction import predict_volume_probabilities, volume_mask
from cmrseg.metrics import summarize
from cmrseg.metrics.volumes import POSITIONS, evaluate_volume, summarize_volumes
from cmrseg.qc.assess import QcResult


def score_volume_masks(volumes: Sequence[Volume], masks: Sequence[np.ndarray], qc: QcResult | None = None
                       ) -> dict[str, Any]:
    """Score predicted label volumes against the volumes' labels: per-volume rows, summaries, clinical indices
    of both and their agreement; with ``qc`` (:func:`cmrseg.qc.assess` of the same volumes) each row also carries
    ``qc_dice``, ``qc_flag`` and ``qc_reasons`` and ``qc`` summarises them against the true Dice
    (:func:`cmrseg.qc.assess.qc_against_truth`)."""
    from cmrseg.qc.assess import qc_against_truth

    rows, predicted, true = [], [], []
    for volume, mask in zip(volumes, masks, strict=True):
        if volume.label is None:
            raise CmrsegError(f"{volume.path}: no label volume to evaluate against")
        row = evaluate_volume(mask, volume.label, volume.spacing)
        row.update(case=volume.case, patient=volume.patient, phase=volume.phase, group=volume.group,
                   n_slices=volume.n_slices, spacing=list(volume.spacing) if volume.spacing else None,
                   **(qc.cases[volume.case] if qc is not None else {}))
        rows.append(row)
        predicted.append(PhaseLabel.from_volume(volume, mask))
        true.append(PhaseLabel.from_volume(volume, volume.label))
    predicted_rows, true_rows = indices_table(predicted), indices_table(true)
    checks = {"qc": qc_against_truth(rows, qc.threshold)} if qc is not None else {}
    return {**summarize_volumes(rows), "per_volume": rows, "indices": predicted_rows, "true_indices": true_rows,
            "agreement": agreement(predicted_rows, true_rows), "n_volumes": len(rows), **checks}


def predict_volume_masks(
    predictor: Predictor,
    volumes: Sequence[Volume],
    postprocess: bool,
    class_weights: Sequence[float] | None = None,
    target_spacing: Sequence[float] | None = None,
    progress: bool = False,
) -> list[np.ndarray]:
    """Predicted label volumes of ``volumes`` (see :mod:`cmrseg.inference.volume_prediction`)."""
    return [volume_mask(probs, postprocess, class_weights)
            for probs in predict_volume_probabilities(predictor, volumes, target_spacing, progress)]


def evaluate_volumes(
    predictor: Predictor,
    volumes: Sequence[Volume],
    postprocess: bool,
    class_weights: Sequence[float] | None = None,
    target_spacing: Sequence[float] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Predict labeled ``volumes`` and score them (:func:`score_volume_masks`)."""
    return score_volume_masks(volumes, predict_volume_masks(predictor, volumes, postprocess, class_weights,
                                                            target_spacing, progress))


def _run_masks(run_dir: str | Path, volumes: Sequence[Volume], settings: PredictSettings | None, progress: bool,
               qc_reference: str | Path | None = None) -> tuple[list[np.ndarray], PredictSettings, QcResult]:
    """Predicted label volumes, the resolved settings and the volumes' quality control (:mod:`cmrseg.qc`; with the
    agreement of the ``qc_reference`` model when given)."""
    from cmrseg.inference import load_run
    from cmrseg.inference.volume_prediction import training_spacing
    from cmrseg.qc import assess
    from cmrseg.qc.predict import predict_with_signals, qc_model
    from cmrseg.qc.reference import load_reference

    predictor, resolved = load_run(run_dir, settings)
    reference = load_reference(qc_reference)
    model = qc_model(run_dir, reference is not None)
    masks, signals = predict_with_signals(predictor, volumes, bool(resolved.postprocess), resolved.class_weights,
                                          training_spacing(run_dir), progress, reference)
    phases = [PhaseLabel.from_volume(v, m) for v, m in zip(volumes, masks, strict=True)]
    checked = assess({v.case: s for v, s in zip(volumes, signals, strict=True)}, phases, model)
    return masks, resolved, checked


def labeled_volumes(data_dir: str | Path) -> list[Volume]:
    """Every volume of ``data_dir`` with its labels (each must have them)."""
    return read_volumes(data_dir, require_labels=True)


def _metric_line(label: str, values: dict[str, float], digits: int) -> str:
    cells = "".join("     n/a" if math.isnan(values[k]) else f"{values[k]:>8.{digits}f}" for k in (*STRUCTURES, "mean"))
    return f"{label:<24}{cells}"


def format_volume_report(result: dict[str, Any]) -> str:
    """Plain-text tables: 3D Dice / HD95 for all volumes, ED, ES and each diagnosis group; slice Dice by position;
    index agreement."""
    unit = result["hd95_unit"]
    lines = [f"{'per volume':<24}" + "".join(f"{c:>8}" for c in (*STRUCTURES, "mean"))]
    for name, group in result["volumes"].items():
        lines.append(_metric_line(f"Dice 3D {name} ({group['n_volumes']})", group["dice"], 3))
        lines.append(_metric_line(f"HD95 {name} {unit}", group["hd95"], 2))
    all_volumes = result["volumes"].get("all")
    if all_volumes:
        missed = ", ".join(f"{s} {all_volumes['misses'][s]}" for s in STRUCTURES)
        invented = ", ".join(f"{s} {all_volumes['false_detections'][s]}" for s in STRUCTURES)
        lines.append(f"missed structures: {missed}; false detections: {invented}")
    lines.append("")
    lines.append(f"{'slice Dice by position':<24}")
    for position in POSITIONS:
        entry = result["positions"][position]
        lines.append(_metric_line(f"{position} ({entry['n_slices']} slices)", entry["dice"], 3))
    if result["agreement"]:
        lines.append("")
        lines.append("clinical indices, predicted vs true (bias = predicted - true):")
        lines.append(format_agreement(result["agreement"]))
    notes = sorted({row["note"] for row in result["indices"] if row["note"]})
    lines.extend(f"note: {note}" for note in notes)
    if "qc" in result:
        from cmrseg.qc.assess import format_qc_against_truth

        lines.append("")
        lines.append(format_qc_against_truth(result["qc"], result["per_volume"]))
    lines.append(f"({result['n_volumes']} volumes; Dice and HD95 over whole volumes; a structure missed or invented "
                 f"gets the volume diagonal as HD95)")
    return "\n".join(lines)


def config_validation_volumes(config: ExperimentConfig) -> list[Volume]:
    """The whole volumes behind a config's validation split (its data, split seed and fold)."""
    from cmrseg.data.dataset import prepare_data

    wanted = {sample.volume for sample in prepare_data(config).val if sample.volume is not None}
    folders = [p for p in (config.dataset_info.train_data_path, config.dataset_info.val_data_path) if p]
    return [load_volume(case) for folder in dict.fromkeys(folders) for case in list_cases(folder) if case.case in wanted]


def validation_volumes(run_dir: str | Path) -> list[Volume]:
    """The whole volumes behind a volume-trained run's validation split (same data, seed and fold)."""
    from cmrseg.workflows.ensemble import validation_config

    volumes = config_validation_volumes(validation_config(run_dir))
    if not volumes:
        raise CmrsegError(f"{run_dir}: the run has no validation volumes (split_mode 'full' or PNG data); give a labeled "
                          "data folder", key="data")
    return volumes


def predict_held_out_volumes(run_dir: Path, config: ExperimentConfig, settings: PredictSettings
                             ) -> tuple[list[Volume], list[np.ndarray]]:
    """A cross-validation fold's held-out volumes and their predicted label volumes (``settings`` as given)."""
    return held_out_with_qc(run_dir, config, settings)[:2]


def held_out_with_qc(run_dir: Path, config: ExperimentConfig, settings: PredictSettings
                     ) -> tuple[list[Volume], list[np.ndarray], QcResult]:
    """:func:`predict_held_out_volumes` and the volumes' quality control (:mod:`cmrseg.qc`)."""
    volumes = config_validation_volumes(config)
    masks, _, checked = _run_masks(run_dir, volumes, settings, progress=False)
    return volumes, masks, checked


def slice_scores(volumes: Sequence[Volume], masks: Sequence[np.ndarray]) -> dict[str, Any]:
    """Per-slice 2D scores (:func:`cmrseg.metrics.summarize`, ids ``CASE_zNN``) of every slice of the labeled
    ``volumes``, each cut from its predicted label volume."""
    ids, preds, truths = [], [], []
    for volume, mask in zip(volumes, masks, strict=True):
        for z in range(volume.n_slices):
            ids.append(volume.slice_id(z))
            preds.append(mask[:, :, z])
            truths.append(volume.label[:, :, z])  # type: ignore[index]
    return summarize(ids, preds, truths)


def write_volume_report(out_dir: Path, volumes: Sequence[Volume], masks: Sequence[np.ndarray], prefix: str,
                        qc: QcResult | None = None) -> dict[str, Any]:
    """Score ``masks`` and write ``PREFIX_volumes.json``, ``PREFIX_indices.csv`` (predicted; with ``qc`` each
    patient's flag), ``PREFIX_indices_true.csv`` and the agreement plots ``PREFIX_agreement_scatter.png`` /
    ``_bland_altman.png`` into ``out_dir``."""
    from cmrseg.metrics.clinical import plot_agreement, with_patient_qc, write_indices_csv
    from cmrseg.io.atomic import write_json_atomic

    scored = score_volume_masks(volumes, masks, qc)
    write_json_atomic(out_dir / f"{prefix}_volumes.json", scored)
    write_indices_csv(with_patient_qc(scored["indices"], qc) if qc is not None else scored["indices"],
                      out_dir / f"{prefix}_indices.csv")
    write_indices_csv(scored["true_indices"], out_dir / f"{prefix}_indices_true.csv")
    plot_agreement(scored["indices"], scored["true_indices"], out_dir / f"{prefix}_agreement_scatter.png",
                   out_dir / f"{prefix}_agreement_bland_altman.png")
    return scored


def evaluate_run_on_volumes(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    settings: PredictSettings | None = None,
    progress: bool = True,
    qc_reference: str | Path | None = None,
) -> dict[str, Any]:
    """Per-volume scores of a run folder on ``data_dir`` (default: its validation volumes), predicted
    with ``settings`` (default: the run's own); ``qc_reference`` as for :func:`run_volumes_with_qc`."""
    volumes, masks, resolved, checked = run_volumes_with_qc(run_dir, data_dir, settings, progress, qc_reference)
    result = score_volume_masks(volumes, masks, checked)
    result.update(resolved.summary())
    return result


def predict_run_volumes(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    settings: PredictSettings | None = None,
    progress: bool = True,
) -> tuple[list[Volume], list[np.ndarray], PredictSettings]:
    """The labeled volumes of ``data_dir`` (default: the run's validation volumes), their predicted label
    volumes and the resolved settings they were predicted with."""
    return run_volumes_with_qc(run_dir, data_dir, settings, progress)[:3]


def run_volumes_with_qc(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    settings: PredictSettings | None = None,
    progress: bool = True,
    qc_reference: str | Path | None = None,
) -> tuple[list[Volume], list[np.ndarray], PredictSettings, QcResult]:
    """:func:`predict_run_volumes` and the volumes' quality control (:mod:`cmrseg.qc`; ``qc_reference``, a run, export
    or shipped model, adds its agreement: :mod:`cmrseg.qc.reference`)."""
    volumes = labeled_volumes(data_dir) if data_dir is not None else validation_volumes(run_dir)
    masks, resolved, checked = _run_masks(run_dir, volumes, settings, progress, qc_reference)
    return volumes, masks, resolved, checked


def is_volume_evaluation(run_dir: str | Path, data_dir: str | Path | None) -> bool:
    """Whether ``evaluate`` scores volumes: ``data_dir`` holds stacks of slices (:func:`cmrseg.data.readers.reads_stacks`:
    NIfTI volumes), or (without it) the run was trained on some."""
    from cmrseg import runs

    if data_dir is not None:
        return reads_stacks(data_dir)
    return trained_on_volumes(runs.read_run_config(runs.require_run_dir(run_dir)))


def trained_on_volumes(config: ExperimentConfig) -> bool:
    """Whether the config's training data is a dataset of volumes (stacks of slices), not single images."""
    path = config.dataset_info.train_data_path
    return bool(path) and reads_stacks(path)
