"""The QC estimate: a predicted Dice per structure (``qc_dice_RV``, ``qc_dice_Myo``, ``qc_dice_LV``) and their mean
(``qc_dice``) from the signals of :mod:`cmrseg.qc.signals`, by ridge regressions on standardised features (one per
structure, on the same features: their mean is the ridge regression of the mean Dice), fitted on labeled volumes
(:mod:`cmrseg.qc.calibrate`) and stored with the run (:func:`cmrseg.runs.write_qc_model`). A model stored before
per-structure estimates (format version 1: the mean only, on :data:`FEATURES_V1`) still loads and predicts the mean.

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

from cmrseg.constants import STRUCTURES
from cmrseg.errors import CmrsegError

FEATURES_V1 = ("view_dice", "view_dice_min", "margin", "uncertain", "rv_lv", "myo_lv", "foreground", "lv_enclosure",
               "n_missing", "n_gap_slices", "n_rv_apart")
"""The regressor inputs of format version 1 (the mean Dice only)."""
MEMBER_FEATURES = ("member_dice", "member_dice_min", *(f"member_dice_{name}" for name in STRUCTURES))
"""The ensemble members' agreement (NaN, i.e. no contribution, for a single network)."""
FEATURES = (*FEATURES_V1, *(f"view_dice_{name}" for name in STRUCTURES), *(f"margin_{name}" for name in STRUCTURES),
            *MEMBER_FEATURES, "relabelled")
"""Regressor inputs, in order (see :func:`features`): version 1's, each structure's view agreement and margin, and
the ensemble members' agreement, and the share the clean-up relabelled."""
TARGETS = ("RV", "Myo", "LV")
"""What a model predicts: each structure's Dice (their mean is ``qc_dice``)."""
FORMAT = "cmrseg-qc-model"
FORMAT_VERSION = 2


NEAR_ONE = ("view_dice", "view_dice_min", "margin", "lv_enclosure", *(f"view_dice_{name}" for name in STRUCTURES),
            *(f"margin_{name}" for name in STRUCTURES), *MEMBER_FEATURES)
"""Signals that are 1 at best and enter the regression as ``log(1 - value + 0.01)``: the step from 0.98 to 0.99
matters as much as from 0.5 to 0.75 (cross-validated on the benchmark pool: r 0.91 instead of 0.89)."""
SHARES = ("uncertain", "relabelled")
"""Small shares (0 at best) that enter the regression as ``log(value + 0.01)``."""
ALPHA = 10.0
"""Ridge penalty on the standardised features (cross-validated on the benchmark pool: 10 beats 0.1-3)."""


def features(signals: Mapping[str, Any], names: Sequence[str] = FEATURES) -> np.ndarray:
    """The features ``names`` (default :data:`FEATURES`) of one volume's signals (NaN where a signal is unknown or
    was not measured): :data:`NEAR_ONE` ones on a log scale, :data:`SHARES` as ``log(value + 0.01)``, counts of
    missing structures, gap slices and RV-apart slices."""
    counts = {"n_missing": len(signals["missing"]), "n_gap_slices": sum(len(z) for z in signals["gaps"].values()),
              "n_rv_apart": len(signals["rv_apart"])}
    values = []
    for name in names:
        value = float(counts[name]) if name in counts else float(signals.get(name, math.nan))
        value = math.log(1.0 - min(value, 1.0) + 0.01) if name in NEAR_ONE else value
        values.append(math.log(value + 0.01) if name in SHARES else value)
    return np.array(values)


@dataclass
class QcModel:
    """Fitted ridge regressions ``Dice[t] = intercept[t] + coef[t] . (x - mean) / scale``, one per target of
    :data:`TARGETS` (or the mean Dice alone, ``targets == ["mean"]``, in a version 1 model), clipped to [0, 1].

    ``cv`` holds the patient-wise cross-validated MAE and correlation measured when it was fitted, ``source``
    where (run, data, TTA)."""

    mean: list[float]
    scale: list[float]
    coef: list[list[float]]
    intercept: list[float]
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    targets: list[str] = field(default_factory=lambda: list(TARGETS))
    alpha: float = ALPHA
    cv: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def inputs(self, signals: Mapping[str, Any]) -> np.ndarray:
        """The features this model reads, of one volume's signals."""
        return features(signals, self.features)

    def _raw(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        z = np.nan_to_num((x - np.array(self.mean)) / np.array(self.scale), nan=0.0)
        return np.array(self.intercept) + z @ np.array(self.coef).T

    def predict(self, x: np.ndarray) -> np.ndarray:
        """qc_dice (the mean Dice over RV, Myo and LV) of the rows of ``x`` (``N x F`` features of
        :attr:`features`, NaN = unknown = the training mean)."""
        return np.clip(self._raw(x).mean(axis=1), 0.0, 1.0)

    def predict_structures(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Each structure's predicted Dice for the rows of ``x``; empty for a model of the mean only."""
        if list(self.targets) != list(TARGETS):
            return {}
        return {name: np.clip(column, 0.0, 1.0) for name, column in zip(self.targets, self._raw(x).T, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the format name and version."""
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "QC model") -> QcModel:
        """Read :meth:`to_dict`'s form back (version 1 too: one regression of the mean); a foreign or damaged one
        is a one-line error."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise CmrsegError(f"{source}: not a cmrseg QC model (expected \"format\": \"{FORMAT}\")")
        version = data.get("format_version")
        if version not in (1, FORMAT_VERSION):
            raise CmrsegError(f"{source}: QC model format_version {version}, expected {FORMAT_VERSION} (or 1)")
        fields = {k: v for k, v in data.items() if k not in ("format", "format_version")}
        if version == 1:  # one regression of the mean Dice: a flat coef and one intercept
            fields.update(coef=[fields.get("coef")], intercept=[fields.get("intercept")], targets=["mean"],
                          features=fields.get("features", list(FEATURES_V1)))
        try:
            model = cls(**fields)
            shapes = (len(model.mean), len(model.scale), *(len(row) for row in model.coef))
            ok = (len(model.coef) == len(model.intercept) == len(model.targets) and set(shapes) == {len(model.features)}
                  and set(model.features) <= set(FEATURES) and model.targets in (list(TARGETS), ["mean"]))
        except TypeError as err:
            raise CmrsegError(f"{source}: damaged QC model ({err})") from None
        if not ok:
            raise CmrsegError(f"{source}: QC model features {model.features} for targets {model.targets}: expected "
                              f"names of {list(FEATURES)}, one weight per feature and target")
        return model


def fit(x: np.ndarray, y: np.ndarray, alpha: float = ALPHA, names: Sequence[str] = FEATURES) -> QcModel:
    """Ridge regressions of the columns of ``y`` (``N x 3``: true RV, Myo and LV Dice) on the rows of ``x`` (the
    features ``names``), features standardised; an unknown value (NaN) is the column's mean, a column that never
    varies gets no weight."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float).reshape(len(x), -1)
    mean = np.array([np.nanmean(c) if np.isfinite(c).any() else 0.0 for c in x.T])
    scale = np.array([np.nanstd(c) if np.isfinite(c).any() else 0.0 for c in x.T])
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = np.nan_to_num((x - mean) / scale, nan=0.0)
    intercept = y.mean(axis=0)
    coef = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - intercept))
    targets = list(TARGETS) if y.shape[1] == len(TARGETS) else ["mean"]
    return QcModel(mean.tolist(), scale.tolist(), coef.T.tolist(), intercept.tolist(), features=list(names),
                   targets=targets, alpha=alpha)


def patient_folds(groups: Sequence[str], folds: int) -> list[int]:
    """Fold index of each row, whole groups (patients) per fold, dealt round-robin in sorted order."""
    order = {g: i % folds for i, g in enumerate(sorted(set(groups)))}
    return [order[g] for g in groups]


def cross_validated(x: np.ndarray, y: np.ndarray, groups: Sequence[str], folds: int = 5, alpha: float = ALPHA,
                    names: Sequence[str] = FEATURES) -> tuple[np.ndarray, np.ndarray]:
    """Each row's qc_dice and per-structure estimates (``N x 3``, NaN for a model of the mean) from a model fitted
    on the other folds' patients only (never on its own patient)."""
    fold = np.array(patient_folds(groups, folds))
    mean, structures = np.full(len(y), math.nan), np.full((len(y), len(TARGETS)), math.nan)
    for k in set(fold.tolist()):
        held = fold == k
        model = fit(x[~held], y[~held], alpha, names)
        mean[held] = model.predict(x[held])
        per = model.predict_structures(x[held])
        if per:
            structures[held] = np.stack([per[name] for name in TARGETS], axis=1)
    return mean, structures


def agreement_stats(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAE and Pearson correlation of predicted with true Dice, and their count."""
    r = float(np.corrcoef(predicted, true)[0, 1]) if len(true) > 2 and np.std(predicted) > 0 and np.std(true) > 0 else math.nan
    return {"n": int(len(true)), "mae": float(np.abs(predicted - true).mean()), "r": r}


DEFAULT_MODEL = QcModel(
    mean=[-1.54346, -1.10627, -0.848945, -0.643017, -0.246851, -0.632734, 0.162305, -1.84214, 0.0666667, 0, 0.0966667],
    scale=[0.835066, 0.89795, 0.489209, 0.507541, 1.28244, 2.39489, 0.0602825, 1.59639, 0.249444, 1, 0.523439],
    coef=[[-0.0795984, -0.0418958, -0.0625629, -0.0224948, 0.031128, 0.000393625, -0.0146796, -0.0285203, -0.0144017, 0,
           0.000809973]],
    intercept=[0.586328], features=list(FEATURES_V1), targets=["mean"], alpha=10,
    cv={"n": 300, "mae": 0.0830, "r": 0.9137, "folds": 5, "patients": 50},
    source={"what": "benchmarks/qc_benchmark.py pool: acdc96, 5 patient-wise folds, small U-Nets after 1, 3 and 12 epochs, "
                    "flip TTA"})
"""Used when the run carries no calibrated model (see the module doc)."""
