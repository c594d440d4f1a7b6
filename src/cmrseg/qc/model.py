"""The QC estimate: a predicted Dice per structure (``qc_dice_RV``, ``qc_dice_Myo``, ``qc_dice_LV``) and their mean
(``qc_dice``) from the signals of :mod:`cmrseg.qc.signals`, by ridge regressions on standardised features and their
squares, clipped to the range they were fitted on (one regression per structure, on the same features: their mean
is the ridge regression of the mean Dice), fitted on labeled volumes (:mod:`cmrseg.qc.calibrate`) and stored with the
run (:func:`cmrseg.runs.write_qc_model`). Each estimate is clipped to the Dice range its calibration volumes
really had (format version 4): no volume is estimated better than any volume it was fitted on. Models stored before
(format version 1: the mean only, on :data:`FEATURES_V1`; version 2: per structure, no squares; version 3: no target
range) still load and predict as they did.

A feature the volume lacks (``view_dice`` without TTA, ``member_dice`` of a single network) is set to its training
mean, i.e. contributes nothing; the estimate then rests on the other signals. Without a calibrated model
:data:`DEFAULT_MODEL` is used: the same regression fitted once on the native-resolution benchmark pool (the native
CV's held-out volumes at several training stages; benchmarks/qc_benchmark.py, BENCHMARKS.md), which a run calibrated
on its own data should replace; with a reference model (:mod:`cmrseg.qc.reference`) :data:`DEFAULT_REFERENCE_MODEL`,
fitted on the same pool with the agreement of a reference CV trained apart.
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
REFERENCE_FEATURES = ("reference_dice", "reference_dice_min", *(f"reference_dice_{name}" for name in STRUCTURES))
"""The agreement with a reference model (:mod:`cmrseg.qc.reference`; NaN, i.e. no contribution, without one)."""
FEATURES = (*FEATURES_V1, *(f"view_dice_{name}" for name in STRUCTURES), *(f"margin_{name}" for name in STRUCTURES),
            *MEMBER_FEATURES, "relabelled", *REFERENCE_FEATURES)
"""Regressor inputs, in order (see :func:`features`): version 1's, each structure's view agreement and margin, the
ensemble members' agreement, the share the clean-up relabelled and the agreement with a reference model."""
DEFAULT_FEATURES = tuple(name for name in FEATURES if name not in MEMBER_FEATURES + REFERENCE_FEATURES)
"""What the default model reads: the members' agreement added nothing to the flip views' on the native pool's snapshot
ensembles (BENCHMARKS.md), so a model not calibrated on an ensemble leaves it out; the reference's agreement is only
there with ``--qc-reference`` (:data:`DEFAULT_REFERENCE_FEATURES`)."""
DEFAULT_REFERENCE_FEATURES = (*DEFAULT_FEATURES, *REFERENCE_FEATURES)
"""What the default model of a prediction with a reference reads."""
TARGETS = ("RV", "Myo", "LV")
"""What a model predicts: each structure's Dice (their mean is ``qc_dice``)."""
FORMAT = "cmrseg-qc-model"
FORMAT_VERSION = 4
SQUARES = True
"""Fit each feature's square beside it (cross-validated on the native pool, BENCHMARKS.md: MAE 0.037 and r 0.90 instead
of 0.044 and 0.87 with the features alone): the Dice falls faster than linearly as agreement and margins drop."""


NEAR_ONE = ("view_dice", "view_dice_min", "margin", "lv_enclosure", *(f"view_dice_{name}" for name in STRUCTURES),
            *(f"margin_{name}" for name in STRUCTURES), *MEMBER_FEATURES, *REFERENCE_FEATURES)
"""Signals that are 1 at best and enter the regression as ``log(1 - value + 0.01)``: the step from 0.98 to 0.99
matters as much as from 0.5 to 0.75 (cross-validated on the benchmark pool: r 0.91 instead of 0.89)."""
SHARES = ("uncertain", "relabelled")
"""Small shares (0 at best) that enter the regression as ``log(value + 0.01)``."""
ALPHA = 10.0
"""Ridge penalty on the standardised features (cross-validated on the benchmark pool: 10 beats 0.1-3)."""
REFERENCE_ALPHA = 1.0
"""Ridge penalty of a model that reads a reference model's agreement (cross-validated on the native pool with a
reference, BENCHMARKS.md: the agreement carries most of the estimate and a lighter penalty lets it; MAE 0.029 at 1
against 0.039 at 10 on the issue's pool)."""


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
    squares: bool = False
    """Each feature's square enters beside it (format version 3); ``mean``, ``scale`` and ``coef`` then hold the
    features' entries, then their squares'."""
    low: list[float] | None = None
    high: list[float] | None = None
    """The range of each column in the calibration data (format version 3): a volume's columns are clipped to it, so
    the estimate never extrapolates a curve beyond what it was fitted on."""
    target_low: list[float] | None = None
    target_high: list[float] | None = None
    """The lowest and highest true Dice of each target in the calibration data (format version 4): each estimate is
    clipped to them, so no volume is estimated better than the best one the model was fitted on."""
    cv: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def inputs(self, signals: Mapping[str, Any]) -> np.ndarray:
        """The features this model reads, of one volume's signals."""
        return features(signals, self.features)

    def _raw(self, x: np.ndarray) -> np.ndarray:
        x = with_squares(np.atleast_2d(np.asarray(x, dtype=float)), self.squares)
        if self.low is not None and self.high is not None:
            x = np.clip(x, self.low, self.high)  # NaN (unknown) stays NaN
        z = np.nan_to_num((x - np.array(self.mean)) / np.array(self.scale), nan=0.0)
        raw = np.array(self.intercept) + z @ np.array(self.coef).T
        if self.target_low is not None and self.target_high is not None:
            raw = np.clip(raw, self.target_low, self.target_high)
        return raw

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
        if version not in (1, 2, 3, FORMAT_VERSION):
            raise CmrsegError(f"{source}: QC model format_version {version}, expected {FORMAT_VERSION} (or 1-3); a "
                              "newer cmrseg wrote it?")
        fields = {k: v for k, v in data.items() if k not in ("format", "format_version")}
        if version == 1:  # one regression of the mean Dice: a flat coef and one intercept
            fields.update(coef=[fields.get("coef")], intercept=[fields.get("intercept")], targets=["mean"],
                          features=fields.get("features", list(FEATURES_V1)))
        try:
            model = cls(**fields)
            shapes = (len(model.mean), len(model.scale), *(len(row) for row in model.coef))
            width = len(model.features) * (2 if model.squares else 1)
            bounds = [len(b) for b in (model.low, model.high) if b is not None]
            targets = {len(b) for b in (model.target_low, model.target_high) if b is not None}
            ok = (len(model.coef) == len(model.intercept) == len(model.targets) and set(shapes + tuple(bounds)) == {width}
                  and targets <= {len(model.targets)}
                  and set(model.features) <= set(FEATURES) and model.targets in (list(TARGETS), ["mean"]))
        except TypeError as err:
            raise CmrsegError(f"{source}: damaged QC model ({err})") from None
        if not ok:
            raise CmrsegError(f"{source}: QC model features {model.features} for targets {model.targets}: expected "
                              f"names of {list(FEATURES)}, one weight per feature and target")
        return model


def with_squares(x: np.ndarray, squares: bool) -> np.ndarray:
    """``N x F`` features, with their squares appended when ``squares`` (an unknown feature's square is unknown)."""
    return np.hstack([x, x**2]) if squares else x


def fit(x: np.ndarray, y: np.ndarray, alpha: float = ALPHA, names: Sequence[str] = FEATURES,
        squares: bool = SQUARES) -> QcModel:
    """Ridge regressions of the columns of ``y`` (``N x 3``: true RV, Myo and LV Dice) on the rows of ``x`` (the
    features ``names``, with their squares when ``squares``), standardised; an unknown value (NaN) is the column's
    mean, a column that never varies gets no weight."""
    x, y = with_squares(np.asarray(x, dtype=float), squares), np.asarray(y, dtype=float).reshape(len(x), -1)
    known = [np.isfinite(c).any() for c in x.T]
    low = [float(np.nanmin(c)) if k else 0.0 for c, k in zip(x.T, known, strict=True)]  # a column never known has no weight
    high = [float(np.nanmax(c)) if k else 0.0 for c, k in zip(x.T, known, strict=True)]
    mean = np.array([np.nanmean(c) if k else 0.0 for c, k in zip(x.T, known, strict=True)])
    scale = np.array([np.nanstd(c) if k else 0.0 for c, k in zip(x.T, known, strict=True)])
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = np.nan_to_num((x - mean) / scale, nan=0.0)
    intercept = y.mean(axis=0)
    coef = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - intercept))
    targets = list(TARGETS) if y.shape[1] == len(TARGETS) else ["mean"]
    return QcModel(mean.tolist(), scale.tolist(), coef.T.tolist(), intercept.tolist(), features=list(names),
                   targets=targets, alpha=alpha, squares=squares, low=low, high=high,
                   target_low=y.min(axis=0).tolist(), target_high=y.max(axis=0).tolist())


def patient_folds(groups: Sequence[str], folds: int) -> list[int]:
    """Fold index of each row, whole groups (patients) per fold, dealt round-robin in sorted order."""
    order = {g: i % folds for i, g in enumerate(sorted(set(groups)))}
    return [order[g] for g in groups]


def cross_validated(x: np.ndarray, y: np.ndarray, groups: Sequence[str], folds: int = 5, alpha: float = ALPHA,
                    names: Sequence[str] = FEATURES, squares: bool = SQUARES) -> tuple[np.ndarray, np.ndarray]:
    """Each row's qc_dice and per-structure estimates (``N x 3``, NaN for a model of the mean) from a model fitted
    on the other folds' patients only (never on its own patient)."""
    fold = np.array(patient_folds(groups, folds))
    mean, structures = np.full(len(y), math.nan), np.full((len(y), len(TARGETS)), math.nan)
    for k in set(fold.tolist()):
        held = fold == k
        model = fit(x[~held], y[~held], alpha, names, squares)
        mean[held] = model.predict(x[held])
        per = model.predict_structures(x[held])
        if per:
            structures[held] = np.stack([per[name] for name in TARGETS], axis=1)
    return mean, structures


def agreement_stats(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAE and Pearson correlation of predicted with true Dice, and their count."""
    r = float(np.corrcoef(predicted, true)[0, 1]) if len(true) > 2 and np.std(predicted) > 0 and np.std(true) > 0 else math.nan
    return {"n": int(len(true)), "mae": float(np.abs(predicted - true).mean()), "r": r}


DEFAULT_FILE = "default_model.json"
"""The default QC model, package data beside this module (see the module doc and BENCHMARKS.md)."""
DEFAULT_REFERENCE_FILE = "default_model_reference.json"
"""The default QC model of a prediction with a reference model (:data:`DEFAULT_REFERENCE_FEATURES`), fitted on the
same pool with the reference CV's agreement."""


def _default_model(name: str) -> QcModel:
    import json
    from importlib.resources import files

    return QcModel.from_dict(json.loads(files("cmrseg.qc").joinpath(name).read_text()), f"cmrseg/qc/{name}")


DEFAULT_MODEL = _default_model(DEFAULT_FILE)
"""Used when the run carries no calibrated model (see the module doc)."""
DEFAULT_REFERENCE_MODEL = _default_model(DEFAULT_REFERENCE_FILE)
"""Used instead of :data:`DEFAULT_MODEL` when a reference model gives its agreement (``--qc-reference``)."""


def uses_reference(model: QcModel) -> bool:
    """Whether ``model`` reads the agreement with a reference model (was fitted with one)."""
    return any(name in REFERENCE_FEATURES for name in model.features)


def model_for(calibrated: QcModel | None, reference: bool, where: str = "the run") -> QcModel:
    """The QC model of a prediction: the run's calibrated one (which must have been fitted with a reference exactly
    when the prediction has one: a one-line error says so otherwise), else the default for with or without."""
    if calibrated is None:
        return DEFAULT_REFERENCE_MODEL if reference else DEFAULT_MODEL
    if uses_reference(calibrated) != reference:
        fitted = f"calibrated {'with' if uses_reference(calibrated) else 'without'} a reference model"
        fix = "pass the same --qc-reference" if uses_reference(calibrated) else "leave --qc-reference out, or calibrate again with it"
        raise CmrsegError(f"{where}: its QC model was {fitted} (qc_model.json); {fix}", key="qc_reference")
    return calibrated
