"""``cmrseg qc calibrate``: fit the QC estimate of a run on labeled volumes and store it with the run.

The run predicts every labeled volume (with its own TTA and clean-up, as ``predict`` will), the true Dice of RV, Myo
over RV, Myo and LV of each is measured (:func:`cmrseg.metrics.volumes.volume_metrics`), the regression of
:mod:`cmrseg.qc.model` is cross-validated by patient (each patient's estimate from a model fitted on the other
patients) and then fitted on all of them, and the model goes to ``RUN/qc_model.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg import runs
from cmrseg.errors import CmrsegError
from cmrseg.inference.settings import PredictSettings
from cmrseg.qc.model import (ALPHA, FEATURES, REFERENCE_ALPHA, REFERENCE_FEATURES, TARGETS, QcModel, agreement_stats, cross_validated,
                             features, fit)

MIN_PATIENTS = 3
"""Calibration needs labeled volumes of at least this many patients (to fit, and to cross-validate by patient)."""


def require_patients(groups: list[str]) -> int:
    """The number of patients among ``groups`` (one per volume), refused in one line below :data:`MIN_PATIENTS`."""
    patients = len(set(groups))
    if patients < MIN_PATIENTS:
        raise CmrsegError(f"QC calibration needs labeled volumes of at least {MIN_PATIENTS} patients, got "
                          f"{len(groups)} volume{'s' if len(groups) != 1 else ''} of {patients}")
    return patients


def fit_and_score(x: np.ndarray, y: np.ndarray, groups: list[str], folds: int = 5, alpha: float = ALPHA,
                  names: Sequence[str] = FEATURES) -> tuple[QcModel, np.ndarray, np.ndarray]:
    """The model of the true per-structure Dice ``y`` (``N x 3``: RV, Myo, LV) fitted on all rows, with its
    patient-wise cross-validated MAE and r of the mean (and MAE per structure) in ``cv``, and the cross-validated
    estimates of the mean and of each structure."""
    patients = require_patients(groups)
    held_out, held_structures = cross_validated(x, y, groups, min(folds, patients), alpha, names)
    model = fit(x, y, alpha, names)
    model.cv = {**agreement_stats(held_out, y.mean(axis=1)), "folds": min(folds, patients), "patients": patients,
                "mae_structures": {name: float(np.abs(held_structures[:, k] - y[:, k]).mean())
                                   for k, name in enumerate(TARGETS)}}
    return model, held_out, held_structures


def calibrate(run_dir: str | Path, data_dir: str | Path, settings: PredictSettings | None = None, folds: int = 5,
              alpha: float | None = None, progress: bool = True, qc_reference: str | Path | None = None
              ) -> dict[str, Any]:
    """Fit the QC model of the run folder ``run_dir`` on the labeled volumes of ``data_dir``, store it
    (``RUN/qc_model.json``) and return ``{"model", "per_volume", "cv", "path"}``. With ``qc_reference`` (a run,
    export or shipped model) the model also reads the reference's agreement, and predictions with the run must then
    name the same reference (:mod:`cmrseg.qc.reference`). ``alpha`` (the ridge penalty) defaults to
    :data:`~cmrseg.qc.model.ALPHA`, with a reference to :data:`~cmrseg.qc.model.REFERENCE_ALPHA`."""
    from cmrseg.evaluation.volume_scoring import labeled_volumes
    from cmrseg.inference.loading import load_run
    from cmrseg.inference.volume_prediction import training_spacing
    from cmrseg.metrics.volumes import volume_metrics
    from cmrseg.qc.predict import predict_with_signals
    from cmrseg.qc.reference import load_reference

    if Path(run_dir).is_file():
        raise CmrsegError(f"{run_dir}: calibrate a run folder (then export it), not an export")
    run_dir = runs.require_run_dir(run_dir)
    volumes = labeled_volumes(data_dir)
    require_patients([v.patient for v in volumes])
    predictor, resolved = load_run(run_dir, settings)
    reference = load_reference(qc_reference)
    masks, signals = predict_with_signals(predictor, volumes, bool(resolved.postprocess), resolved.class_weights,
                                          training_spacing(run_dir), progress, reference)
    dice = [volume_metrics(m, v.label, v.spacing)["dice"] for v, m in zip(volumes, masks, strict=True)]
    true = np.array([[d[name] for name in TARGETS] for d in dice])
    names = FEATURES if reference is not None else tuple(n for n in FEATURES if n not in REFERENCE_FEATURES)
    alpha = alpha if alpha is not None else REFERENCE_ALPHA if reference is not None else ALPHA
    x = np.stack([features(s, names) for s in signals])
    model, held_out, held_structures = fit_and_score(x, true, [v.patient for v in volumes], folds, alpha, names)
    model.source = {"data": str(Path(data_dir).resolve()), "n_volumes": len(volumes), "tta": bool(resolved.tta),
                    "checkpoint": resolved.checkpoint, "reference": None if qc_reference is None else str(qc_reference)}
    path = runs.write_qc_model(run_dir, model.to_dict())
    rows = [{"case": v.case, "patient": v.patient, "true_dice": float(t.mean()), "qc_dice_cv": float(h),
             **{f"true_dice_{name}": float(t[k]) for k, name in enumerate(TARGETS)},
             **{f"qc_dice_{name}_cv": float(hs[k]) for k, name in enumerate(TARGETS)}}
            for v, t, h, hs in zip(volumes, true, held_out, held_structures, strict=True)]
    return {"model": model, "per_volume": rows, "cv": model.cv, "path": path}


def format_calibration(result: dict[str, Any]) -> str:
    """One paragraph: what was fitted and how well it predicts held-out patients."""
    cv = result["cv"]
    return (f"QC model fitted on {cv['n']} volumes of {cv['patients']} patients; cross-validated by patient "
            f"({cv['folds']} folds): MAE {cv['mae']:.3f}, r {cv['r']:.3f} (predicted vs true mean Dice); MAE per "
            f"structure {', '.join(f'{k} {v:.3f}' for k, v in cv['mae_structures'].items())}\n"
            f"wrote {result['path']}")
