"""Predicting volumes with their QC signals: the probabilities and flip-view agreement that prediction computes
anyway, kept long enough to measure (:func:`cmrseg.qc.signals.volume_signals`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg import runs
from cmrseg.data.readers import Volume
from cmrseg.inference.predictor import Predictor
from cmrseg.qc.model import QcModel, model_for
from cmrseg.qc.reference import Reference
from cmrseg.qc.signals import volume_signals


def enable_agreement(predictor: Predictor) -> None:
    """Ask a predictor that can (:class:`cmrseg.inference.ModelPredictor`) to keep the flip views' agreement (with
    TTA) and its ensemble members' (an ensemble)."""
    if hasattr(predictor, "record_agreement"):
        predictor.record_agreement = True  # type: ignore[attr-defined]


def last_signals(predictor: Predictor, probs: np.ndarray, mask: np.ndarray, volume: Volume | None = None,
                 reference: Reference | None = None) -> dict[str, Any]:
    """The signals of the volume the predictor has just predicted (``probs``, its label volume ``mask``); with a
    ``reference`` model, which predicts ``volume`` too, its agreement."""
    second = None if reference is None or volume is None else reference.mask(volume)
    return volume_signals(probs, mask, getattr(predictor, "agreement", None), getattr(predictor, "member_agreement", None),
                          second)


def predict_with_signals(predictor: Predictor, volumes: Sequence[Volume], postprocess: bool,
                         class_weights: Sequence[float] | None = None, target_spacing: Sequence[float] | None = None,
                         progress: bool = False, reference: Reference | None = None
                         ) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Label volumes of ``volumes`` (as :func:`cmrseg.evaluation.volume_scoring.predict_volume_masks`) and each one's
    QC signals (with the agreement of a ``reference`` model when given)."""
    from tqdm.auto import tqdm

    from cmrseg.inference.volume_prediction import partners_for, require_conditions, volume_mask, volume_probabilities

    where = [(volume.phase, volume.path) for volume in volumes]
    require_conditions(predictor, where)
    if reference is not None:
        reference.require(where)
    partners = partners_for(predictor, volumes, lambda volume: volume.path)
    enable_agreement(predictor)
    masks, signals = [], []
    for volume in tqdm(volumes, desc="predict", unit="volume", disable=not progress, dynamic_ncols=True):
        probs = volume_probabilities(predictor, volume, target_spacing, partners.get(volume.case))
        masks.append(volume_mask(probs, postprocess, class_weights))
        signals.append(last_signals(predictor, probs, masks[-1], volume, reference))
    return masks, signals


def predict_slices_with_signals(predictor: Predictor, samples: Sequence[Any], postprocess: bool,
                                class_weights: Sequence[float] | None = None
                                ) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Masks of single slices (PNG images, as :func:`cmrseg.inference.predict_sample_masks`) and each one's QC
    signals, measured as those of a one-slice volume (no slice gaps; a structure absent from the slice is missing)."""
    from cmrseg.inference.postprocess import to_masks
    from cmrseg.inference.predictor import sample_probabilities

    enable_agreement(predictor)
    probs = sample_probabilities(predictor, samples)
    agreement = getattr(predictor, "agreement", None)
    members = getattr(predictor, "member_agreement", None)
    masks = to_masks(probs, class_weights, postprocess)
    signals = [volume_signals(p[..., None], m[..., None], None if agreement is None else [agreement[i]],
                              None if members is None else [members[i]])
               for i, (p, m) in enumerate(zip(probs, masks, strict=True))]
    return masks, signals


def run_qc_model(run_dir: str | Path) -> QcModel | None:
    """The QC model a run (folder, export zip) was calibrated with, or None (then the default applies)."""
    if Path(run_dir).suffix.lower() == ".onnx":
        return None
    data = runs.read_qc_model(runs.require_run_dir(run_dir))
    return None if data is None else QcModel.from_dict(data, f"{run_dir}/{runs.QC_FILE}")


def qc_model(run_dir: str | Path, reference: bool = False) -> QcModel:
    """The QC model a prediction with the run uses: its calibrated one, else the default, for a prediction with or
    without a reference model (:func:`cmrseg.qc.model.model_for`)."""
    return model_for(run_qc_model(run_dir), reference, str(run_dir))
