"""The QC estimate: a predicted mean Dice (``qc_dice``, over RV, Myo and LV of one volume) from the signals of
:mod:`cmrseg.qc.signals`, by a ridge regression on standardised features, fitted on labeled volumes
(:mod:`cmrseg.qc.calibrate`) and stored with the run (:func:`cmrseg.runs.write_qc_model`).

A feature the volume lacks (``view_dice`` without TTA) is set to its training mean, i.e. contributes nothing;
the estimate then rests on margins and anatomy alone. Without a calibrated model :data:`DEFAULT_MODEL` is used:
the same regression fitted once on the acdc96 benchmark pool (benchmarks/qc_benchmark.py, BENCHMARKS.md), which
a run calibrated on its own data should replace.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cmrseg.errors import CmrsegError

FEATURES = ("view_dice", "view_dice_min", "margin", "uncertain", "rv_lv", "myo_lv", "foreground", "lv_enclosure",
            "n_missing", "n_gap_slices", "n_rv_apart")
"""Regressor inputs, in order (see :func:`features`)."""
FORMAT = "cmrseg-qc-model"
FORMAT_VERSION = 1


NEAR_ONE = ("view_dice", "view_dice_min", "margin", "lv_enclosure")
"""Signals that are 1 at best and enter the regression as ``log(1 - value + 0.01)``: the step from 0.98 to 0.99
matters as much as from 0.5 to 0.75 (cross-validated on the benchmark pool: r 0.91 instead of 0.89)."""
ALPHA = 10.0
"""Ridge penalty on the standardised features (cross-validated on the benchmark pool: 10 beats 0.1-3)."""


def features(signals: Mapping[str, Any]) -> np.ndarray:
    """The :data:`FEATURES` of one volume's signals (NaN where a signal is unknown): :data:`NEAR_ONE` ones on a log
    scale, ``uncertain`` as ``log(value + 0.01)``, counts of missing structures, gap slices and RV-apart slices."""
    counts = {"n_missing": len(signals["missing"]), "n_gap_slices": sum(len(z) for z in signals["gaps"].values()),
              "n_rv_apart": len(signals["rv_apart"])}
    values = []
    for name in FEATURES:
        value = float(counts[name]) if name in counts else float(signals[name])
        value = math.log(1.0 - min(value, 1.0) + 0.01) if name in NEAR_ONE else value
        values.append(math.log(value + 0.01) if name == "uncertain" else value)
    return np.array(values)


@dataclass
class QcModel:
    """A fitted ridge regression ``qc_dice = intercept + coef . (x - mean) / scale``, clipped to [0, 1].

    ``cv`` holds the patient-wise cross-validated MAE and correlation measured when it was fitted, ``source``
    where (run, data, TTA)."""

    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    alpha: float = ALPHA
    cv: dict[str, float] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """qc_dice of the rows of ``x`` (``N x F`` features, NaN = unknown = the training mean)."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        z = np.nan_to_num((x - np.array(self.mean)) / np.array(self.scale), nan=0.0)
        return np.clip(self.intercept + z @ np.array(self.coef), 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the format name and version."""
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "QC model") -> QcModel:
        """Read :meth:`to_dict`'s form back; a foreign or damaged one is a one-line error."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise CmrsegError(f"{source}: not a cmrseg QC model (expected \"format\": \"{FORMAT}\")")
        if data.get("format_version") != FORMAT_VERSION:
            raise CmrsegError(f"{source}: QC model format_version {data.get('format_version')}, expected {FORMAT_VERSION}")
        try:
            model = cls(**{k: v for k, v in data.items() if k not in ("format", "format_version")})
        except TypeError as err:
            raise CmrsegError(f"{source}: damaged QC model ({err})") from None
        if model.features != list(FEATURES) or not len(model.mean) == len(model.scale) == len(model.coef) == len(FEATURES):
            raise CmrsegError(f"{source}: QC model features {model.features}, expected {list(FEATURES)}")
        return model


def fit(x: np.ndarray, y: np.ndarray, alpha: float = ALPHA) -> QcModel:
    """Ridge regression of ``y`` (true mean Dice) on the rows of ``x``, features standardised; an unknown value
    (NaN) is the column's mean, a column that never varies gets no weight."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    mean = np.array([np.nanmean(c) if np.isfinite(c).any() else 0.0 for c in x.T])
    scale = np.array([np.nanstd(c) if np.isfinite(c).any() else 0.0 for c in x.T])
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = np.nan_to_num((x - mean) / scale, nan=0.0)
    intercept = float(y.mean())
    coef = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - intercept))
    return QcModel(mean.tolist(), scale.tolist(), coef.tolist(), intercept, alpha=alpha)


def patient_folds(groups: Sequence[str], folds: int) -> list[int]:
    """Fold index of each row, whole groups (patients) per fold, dealt round-robin in sorted order."""
    order = {g: i % folds for i, g in enumerate(sorted(set(groups)))}
    return [order[g] for g in groups]


def cross_validated(x: np.ndarray, y: np.ndarray, groups: Sequence[str], folds: int = 5, alpha: float = ALPHA
                    ) -> np.ndarray:
    """Each row's qc_dice from a model fitted on the other folds' patients only (never on its own patient)."""
    fold = np.array(patient_folds(groups, folds))
    out = np.full(len(y), math.nan)
    for k in set(fold.tolist()):
        held = fold == k
        out[held] = fit(x[~held], y[~held], alpha).predict(x[held])
    return out


def agreement_stats(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAE and Pearson correlation of predicted with true Dice, and their count."""
    r = float(np.corrcoef(predicted, true)[0, 1]) if len(true) > 2 and np.std(predicted) > 0 and np.std(true) > 0 else math.nan
    return {"n": int(len(true)), "mae": float(np.abs(predicted - true).mean()), "r": r}


DEFAULT_MODEL = QcModel(
    mean=[-1.54346, -1.10627, -0.848945, -0.643017, -0.246851, -0.632734, 0.162305, -1.84214, 0.0666667, 0, 0.0966667],
    scale=[0.835066, 0.89795, 0.489209, 0.507541, 1.28244, 2.39489, 0.0602825, 1.59639, 0.249444, 1, 0.523439],
    coef=[-0.0795984, -0.0418958, -0.0625629, -0.0224948, 0.031128, 0.000393625, -0.0146796, -0.0285203, -0.0144017, 0, 0.000809973],
    intercept=0.586328, alpha=10,
    cv={"n": 300, "mae": 0.0830, "r": 0.9137, "folds": 5, "patients": 50},
    source={"what": "benchmarks/qc_benchmark.py pool: acdc96, 5 patient-wise folds, small U-Nets after 1, 3 and 12 epochs, "
                    "flip TTA"})
"""Used when the run carries no calibrated model (see the module doc)."""
