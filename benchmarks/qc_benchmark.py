"""Issue #27: how well per-case quality control predicts per-volume Dice and flags bad cases, on acdc96.

    nice -n 10 python benchmarks/qc_benchmark.py [--data ../shared/data/acdc96] [--runs runs/qc_bench] [--folds 5]

1. Trains ``cmrseg cv`` (patient-wise ``--folds`` folds) of a small, fast U-Net (depth 3, 8 features, 12 epochs,
   a checkpoint after every epoch) on acdc96: resumed or skipped when already there.
2. Predicts every fold's held-out volumes (flip TTA on) with the weights after epochs :data:`STAGES`: a pool with a
   wide spread of quality, each volume with its QC signals (:mod:`cmrseg.qc`) and its true Dice.
3. Cross-validates the QC regressor by patient (the same folds: a volume's estimate comes from a regressor fitted
   on the other folds' patients only) and reports correlation, MAE, sensitivity/specificity/ROC AUC at flagging
   volumes with true mean Dice < 0.80 or an LV EF error > 10 points, the share flagged on the final model alone,
   and the cost of QC at prediction time (ratio to prediction without it).
4. Writes ``benchmarks/results/qc_benchmark.json`` and ``.md``.

With ``--cv DIR`` an existing ``cmrseg cv`` folder (e.g. the native recipe's 5-fold CV) gives the pool instead of
steps 1-2's small U-Nets: every fold's held-out volumes predicted with the run's own TTA and plan by its weights
after each epoch of ``--stages`` (checkpoints that every fold kept), written to ``qc_benchmark_<name>.json`` and
``.md`` (a stage list other than the kept checkpoints adds ``_epochs_...`` to the name; a stage the folds did not keep,
such as the issue's 1 and 3, is re-trained into ``RUNS/<cv>_early/fold_K`` from the fold's own config, the same run
stopped there). With ``--reference DIR``, another ``cmrseg cv`` on the same folds (a model trained apart, e.g. another
seed and width) is each fold's QC reference model (``--qc-reference``, :mod:`cmrseg.qc.reference`): its final weights
predict every held-out volume once, every pool row carries its agreement, and the estimate with it is measured beside
the one without (``with_reference``; the pool is cached apart, ``pool_<cv>_reference_<ref>.pkl``). Each pool is also
scored with the estimator of format version 1 (the mean Dice on the version-1 features) beside the current one
(per-structure regressions), on the same cross-validation folds.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmrseg.metrics.clinical import PhaseLabel, indices_table
from cmrseg.commands.common import existing_folder
from cmrseg.config import apply_overrides, load_config
from cmrseg.workflows.crossval import cross_validate, fold_dir
from cmrseg.evaluation.volume_scoring import config_validation_volumes, predict_volume_masks
from cmrseg import runs
from cmrseg.config import ModelInfo
from cmrseg.inference import ModelPredictor, PredictSettings, load_run
from cmrseg.models.registry import wrap_network
from cmrseg.models.voting import ensemble_network
from cmrseg.workflows.ensemble import ensemble_spec
from cmrseg.inference.volume_prediction import training_spacing
from cmrseg.metrics.volumes import volume_metrics
from cmrseg.qc import CHECK, DEFAULT_THRESHOLD, assess, features
from cmrseg.qc.assess import BAD_DICE
from cmrseg.qc.model import (ALPHA, DEFAULT_FEATURES, DEFAULT_FILE, DEFAULT_REFERENCE_FEATURES, DEFAULT_REFERENCE_FILE,
                             FEATURES_V1, MEMBER_FEATURES, REFERENCE_ALPHA, SQUARES, TARGETS, QcModel, agreement_stats, fit,
                             patient_folds)
from cmrseg.qc.predict import predict_with_signals
from cmrseg.qc.reference import Reference, load_reference
from cmrseg.runs import epoch_checkpoint
from cmrseg.training.trainer import clone_config
from cmrseg.training.trainer import train as train_run
from cmrseg.io.atomic import atomic_path, write_json_atomic, write_text_atomic
from cmrseg.utils import run_metadata

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
EPOCHS = 12
STAGES = (1, 3, 12)
"""Epochs whose weights predict the pool (12 = the final model)."""
SMALL = {"epochs": EPOCHS, "checkpoint_every": 1, "threads": 1, "tta": False, "tta_scales": [1.0],
         "model_info": {"name": "UNet", "input_channels": 1, "depths": 3, "features": 8, "input_scale": 1}}
"""configs/acdc.json made small and fast: depth 3, 8 features, no input up-sampling, 12 epochs, every epoch saved."""


def small_config(data: Path) -> Any:
    """configs/acdc.json with :data:`SMALL` on ``data``."""
    config = load_config(ROOT / "configs" / "acdc.json")
    config = apply_overrides(config, {"dataset_info.train_data_path": str(data), "split_mode": "auto",
                                      **{k: v for k, v in SMALL.items() if k != "model_info"}})
    return config.model_copy(update={"model_info": config.model_info.model_validate(SMALL["model_info"])})


def train(config: Any, runs_dir: Path, folds: int) -> Any:
    """The k-fold runs of the small recipe (resumed or skipped when there)."""
    return cross_validate(config, folds, runs_dir / "cv", progress=False)


DEFAULT_PATH = ROOT / "src" / "cmrseg" / "qc" / DEFAULT_FILE
DEFAULT_REFERENCE_PATH = DEFAULT_PATH.with_name(DEFAULT_REFERENCE_FILE)


def default_json(model: QcModel) -> str:
    """``model`` as the default model's file: one line per field, numbers rounded to 6 significant digits."""
    import json

    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return float(f"{value:.6g}")
        if isinstance(value, list):
            return [rounded(v) for v in value]
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        return value

    fields = rounded(model.to_dict())
    return "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in fields.items()) + "\n}\n"


EF_ERROR = 10.0
"""A patient's LV EF off by more than this many points makes both its volumes bad."""


def stage_run(cv_dir: Path, early_dir: Path, fold: int, stage: int) -> Path:
    """The run folder with ``fold``'s weights after epoch ``stage``: the CV fold itself, or its early re-run."""
    kept = fold_dir(cv_dir, fold)
    return kept if (kept / epoch_checkpoint(stage)).is_file() else fold_dir(early_dir, fold)


def early_checkpoints(cv_dir: Path, folds: int, stages: tuple[int, ...], early_dir: Path,
                      only: list[int] | None = None) -> None:
    """Re-train each fold's own config (same seed, data and schedule, a checkpoint every epoch) into ``early_dir`` up
    to the latest of ``stages`` the fold did not keep, so a pool can hold the issue's early stages (1, 3 epochs).

    The same as ``cmrseg train --config FOLD/config.json --out EARLY/fold_K --stop-after N --set checkpoint_every=1``;
    resumed or skipped when there."""
    for fold in range(folds) if only is None else only:
        missing = [stage for stage in stages if not (fold_dir(cv_dir, fold) / epoch_checkpoint(stage)).is_file()]
        run_dir = fold_dir(early_dir, fold)
        if not missing or all((run_dir / epoch_checkpoint(stage)).is_file() for stage in missing):
            continue
        resume = (run_dir / runs.LAST_CHECKPOINT).is_file()
        config = runs.read_run_config(fold_dir(cv_dir, fold)).model_copy(update={"checkpoint_every": 1})
        train_run(None if resume else config, run_dir, resume=resume, stop_after=max(missing), progress=False)


@dataclass
class PooledReference(Reference):
    """A fold's QC reference in the pool: each held-out volume predicted once, though every stage is compared with it."""

    masks: dict[str, np.ndarray] = field(default_factory=dict)

    def mask(self, volume: Any) -> np.ndarray:
        if volume.case not in self.masks:
            self.masks[volume.case] = super().mask(volume)
        return self.masks[volume.case]


def fold_reference(reference_cv: Path, fold: int) -> PooledReference:
    """Fold ``fold`` of the reference CV as ``--qc-reference`` loads a run (flip TTA, its plan and clean-up), with
    the weights after its last epoch."""
    epochs = load_config(reference_cv / "config.json").epochs
    loaded = load_reference(fold_dir(reference_cv, fold), PredictSettings(tta=True, checkpoint=epoch_checkpoint(epochs)))
    return PooledReference(**vars(loaded))


def pool(cv_dir: Path, config: Any, folds: int, stages: tuple[int, ...] = STAGES, only: list[int] | None = None,
         early_dir: Path | None = None, have: set[tuple[int, int]] = frozenset(), reference_cv: Path | None = None
         ) -> list[dict[str, Any]]:
    """Every held-out volume of every fold of the cross-validation in ``cv_dir``, predicted by the weights after each
    epoch of ``stages`` (flip TTA, the run's plan; stages the fold did not keep come from ``early_dir``, see
    :func:`early_checkpoints`), with its signals (with ``reference_cv``, the agreement of that CV's same fold:
    :func:`fold_reference`), true Dice per structure and mean, LV EF error of its patient and predicted phase (for the
    patient rules). ``(fold, stage)`` pairs in ``have`` are skipped (already pooled)."""
    rows = []
    for fold in range(folds) if only is None else only:
        volumes = config_validation_volumes(clone_config(config, folds=folds, fold=fold))
        reference = None if reference_cv is None else fold_reference(reference_cv, fold)
        for stage in stages:
            if (fold, stage) in have:
                continue
            run_dir = stage_run(cv_dir, early_dir or cv_dir, fold, stage)
            predictor, resolved = load_run(run_dir, PredictSettings(tta=True, checkpoint=epoch_checkpoint(stage)))
            rows += predicted_rows(predictor, bool(resolved.postprocess), resolved.class_weights, volumes, run_dir,
                                   fold, stage, reference)
    return rows


def predicted_rows(predictor: Any, postprocess: bool, class_weights: Any, volumes: list[Any], run_dir: Path, fold: int,
                   stage: int | str, reference: Reference | None = None) -> list[dict[str, Any]]:
    """``volumes`` predicted (at ``run_dir``'s training spacing) with their signals (and a ``reference``'s agreement),
    true Dice per structure and mean, their patient's LV EF error and predicted phase (for the patient rules): one
    pool row each."""
    masks, signals = predict_with_signals(predictor, volumes, postprocess, class_weights, training_spacing(run_dir),
                                          reference=reference)
    predicted = indices_table(PhaseLabel.from_volume(v, m) for v, m in zip(volumes, masks, strict=True))
    true = {r["patient"]: r for r in indices_table(PhaseLabel.from_volume(v, v.label) for v in volumes)}
    ef_error = {r["patient"]: abs(r["LV_EF_pct"] - true[r["patient"]]["LV_EF_pct"]) for r in predicted}
    rows = []
    for volume, mask, sig in zip(volumes, masks, signals, strict=True):
        dice = volume_metrics(mask, volume.label)["dice"]
        rows.append({"fold": fold, "stage": stage, "case": volume.case, "patient": volume.patient,
                     "true_dice": dice["mean"], "true_structures": [dice[name] for name in TARGETS],
                     "ef_error": ef_error[volume.patient], "signals": sig, "phase": PhaseLabel.from_volume(volume, mask)})
    print(f"fold {fold} epoch {stage}: mean Dice {np.mean([r['true_dice'] for r in rows]):.3f}", flush=True)
    return rows


def snapshot_ensemble(run_dir: Path, epochs: list[int]) -> tuple[ModelPredictor, Any]:
    """The soft-voting ensemble (flip TTA) of one run's weights after each of ``epochs``, built as `cmrseg ensemble`
    builds one from runs (a snapshot ensemble: members that did not see the fold's held-out patients), and the run's
    config."""
    config = runs.read_run_config(run_dir)
    info = config.model_info
    members = [(runs.load_model_from_checkpoint(runs.checkpoint_path(run_dir, epoch_checkpoint(e)), info,
                                                torch.device("cpu")), runs.read_normalization(run_dir), info)
               for e in epochs]
    spec = ensemble_spec([run_dir] * len(epochs), runs.read_plan(run_dir))
    ensemble = ModelInfo(name="Ensemble", **spec.channel_keys())
    network = wrap_network(ensemble, ensemble_network(ensemble, members)).eval()
    return ModelPredictor(network, spec, torch.device("cpu"), tta=True, tta_scales=tuple(config.tta_scales)), config


def member_pool(cv_dir: Path, config: Any, folds: int, epochs: list[int]) -> list[dict[str, Any]]:
    """Every held-out volume of every fold predicted by the snapshot ensemble of its fold's weights after ``epochs``
    (stage ``"members"``): rows that carry the ensemble members' agreement."""
    rows = []
    for fold in range(folds):
        volumes = config_validation_volumes(clone_config(config, folds=folds, fold=fold))
        predictor, run_config = snapshot_ensemble(fold_dir(cv_dir, fold), epochs)
        postprocess = run_config.postprocess
        rows += predicted_rows(predictor, bool(postprocess.largest_component), postprocess.class_weights, volumes,
                               fold_dir(cv_dir, fold), fold, "members")
    return rows


def fold_estimates(x: np.ndarray, y: np.ndarray, fold: np.ndarray, names: list[str], squares: bool = SQUARES,
                   alpha: float = ALPHA) -> np.ndarray:
    """Each row's qc_dice from a model fitted on the rows of the other folds only."""
    estimate = np.full(len(x), np.nan)
    for k in sorted(set(fold.tolist())):
        estimate[fold == k] = fit(x[fold != k], y[fold != k], alpha, names, squares).predict(x[fold == k])
    return estimate


def member_measure(rows: list[dict[str, Any]], members: list[dict[str, Any]], folds: int) -> dict[str, Any]:
    """Does the ensemble members' agreement tell good from bad? On the snapshot ensembles' volumes: its correlation
    with the true Dice (beside the flip views'), and the estimate's MAE and r cross-validated by fold (fitted on the
    other folds' volumes of both pools) without and with the member features."""
    true = np.array([r["true_dice"] for r in members])
    result: dict[str, Any] = {
        "n_volumes": len(members), "mean_true_dice": float(true.mean()),
        "r_member_dice": agreement_stats(np.array([r["signals"]["member_dice"] for r in members]), true)["r"],
        "r_view_dice": agreement_stats(np.array([r["signals"]["view_dice"] for r in members]), true)["r"]}
    both = rows + members
    for label, names in (("without", list(DEFAULT_FEATURES)), ("with", [*DEFAULT_FEATURES, *MEMBER_FEATURES])):
        x = np.stack([features(r["signals"], names) for r in both])
        y = targets_of(both, "current")
        held = np.array([r["stage"] == "members" for r in both])
        estimate = fold_estimates(x, y, np.array([r["fold"] for r in both]), names)
        result[f"estimate_{label}_member_features"] = agreement_stats(estimate[held], true)
    return result


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` (higher = more likely positive): the Mann-Whitney statistic."""
    pos, neg = score[positive], score[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg)))


def rates(flagged: np.ndarray, bad: np.ndarray) -> dict[str, float]:
    """Sensitivity, specificity and counts of a flag against the truth."""
    return {"sensitivity": float((flagged & bad).sum() / max(1, bad.sum())),
            "specificity": float((~flagged & ~bad).sum() / max(1, (~bad).sum())),
            "flagged": int(flagged.sum()), "bad": int(bad.sum()), "flagged_bad": int((flagged & bad).sum()), "n": int(len(bad))}


ESTIMATORS = {"v1": FEATURES_V1, "current": DEFAULT_FEATURES, "reference": DEFAULT_REFERENCE_FEATURES}
"""The estimators compared: format version 1's (the mean Dice on its features), the current per-structure one, and
the same with a reference model's agreement (``--qc-reference``)."""
ESTIMATOR_ALPHA = {"v1": ALPHA, "current": ALPHA, "reference": REFERENCE_ALPHA}
"""The ridge penalty each estimator is fitted with, as cmrseg fits it."""


def targets_of(rows: list[dict[str, Any]], estimator: str) -> np.ndarray:
    """What ``estimator`` is fitted to: the true mean Dice (v1) or each structure's."""
    return np.array([[r["true_dice"]] if estimator == "v1" else r["true_structures"] for r in rows])


def as_seen_by(signals: dict[str, Any], estimator: str) -> dict[str, Any]:
    """A pool row's signals as QC with ``estimator`` sees them: only the reference estimator sees the reference model's
    (its agreement, and its voxels for the patient's EF-gap rule)."""
    return signals if estimator == "reference" else {k: v for k, v in signals.items() if not k.startswith("reference_")}


def cross_validated_qc(rows: list[dict[str, Any]], folds: int, threshold: float, stages: tuple[int, ...],
                       estimator: str = "current") -> None:
    """Add ``qc_dice`` (and each structure's), ``qc_flag``, ``qc_reasons`` and ``rule_flag`` to every row from
    ``estimator`` fitted on the other folds' rows only (all stages): never scored on patients it was fitted on."""
    names = ESTIMATORS[estimator]
    x = np.stack([features(r["signals"], names) for r in rows])
    y = targets_of(rows, estimator)
    fold = np.array([r["fold"] for r in rows])
    if len(set(fold.tolist())) == 1:  # one fold's volumes only: cross-validate by its patients instead
        fold = np.array(patient_folds([r["patient"] for r in rows], folds))
    for k in sorted(set(fold.tolist())):
        model = fit(x[fold != k], y[fold != k], ESTIMATOR_ALPHA[estimator], names, squares=estimator != "v1")
        for stage in stages:
            chosen = [r for r, f in zip(rows, fold, strict=True) if f == k and r["stage"] == stage]
            signals = {r["case"]: as_seen_by(r["signals"], estimator) for r in chosen}
            checked = assess(signals, [r["phase"] for r in chosen], model, threshold)
            rules = assess(signals, [r["phase"] for r in chosen], model, 0.0)
            for r in chosen:
                r.update(checked.cases[r["case"]], rule_flag=rules.cases[r["case"]]["qc_flag"] == CHECK)


def estimator_ablation(rows: list[dict[str, Any]], alphas: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0),
                       base: tuple[str, ...] = DEFAULT_FEATURES) -> list[dict[str, Any]]:
    """MAE and r of the mean-Dice estimate cross-validated by fold (fitted on the other folds' volumes) for the
    estimator's choices (on the features ``base``): without the ``relabelled`` signal, without the squares, and the
    ridge penalty."""
    fold = np.array([r["fold"] for r in rows])
    true = np.array([r["true_dice"] for r in rows])
    y = targets_of(rows, "current")
    variants = [("no relabelled, no squares", [n for n in base if n != "relabelled"], False, 10.0),
                ("no squares", base, False, 10.0), *((f"squares, alpha {a:g}", base, True, a) for a in alphas)]
    table = []
    for label, names, squares, alpha in variants:
        x = np.stack([features(r["signals"], names) for r in rows])
        table.append({"variant": label, **agreement_stats(fold_estimates(x, y, fold, names, squares, alpha), true)})
    return table


def qc_cost(run_dir: Path, volumes: list[Any], checkpoint: str, repeats: int = 2, reference: Path | None = None
            ) -> dict[str, float]:
    """Seconds to predict ``volumes`` with ``run_dir``'s ``checkpoint`` weights, its plan and flip TTA, without and
    with QC (signals and verdict), and with ``reference`` (a run) also with QC with that reference model; best of
    ``repeats``."""
    settings = PredictSettings(tta=True, checkpoint=checkpoint)
    spacing = training_spacing(run_dir)
    timings: dict[str, float] = {"plain": float("inf"), "qc": float("inf")}
    if reference is not None:
        timings["qc_reference"] = float("inf")
    for _ in range(repeats):
        for kind in timings:
            predictor, resolved = load_run(run_dir, settings)
            second = load_reference(reference) if kind == "qc_reference" else None
            started = time.perf_counter()
            if kind == "plain":
                predict_volume_masks(predictor, volumes, bool(resolved.postprocess), resolved.class_weights, spacing)
            else:
                masks, signals = predict_with_signals(predictor, volumes, bool(resolved.postprocess),
                                                      resolved.class_weights, spacing, reference=second)
                assess({v.case: s for v, s in zip(volumes, signals, strict=True)},
                       [PhaseLabel.from_volume(v, m) for v, m in zip(volumes, masks, strict=True)])
            timings[kind] = min(timings[kind], time.perf_counter() - started)
    ratios = {f"ratio{kind.removeprefix('qc')}": timings[kind] / timings["plain"] for kind in timings if kind != "plain"}
    return {**timings, **ratios, "volumes": len(volumes)}


def bad_volumes(rows: list[dict[str, Any]]) -> np.ndarray:
    """What the flag should catch: true mean Dice below :data:`BAD_DICE` or the patient's LV EF off by more than
    :data:`EF_ERROR` points (an unknown EF error counts as off)."""
    return np.array([r["true_dice"] < BAD_DICE or not (r["ef_error"] <= EF_ERROR) for r in rows])


def measure(rows: list[dict[str, Any]], threshold: float, stages: tuple[int, ...] = STAGES) -> dict[str, Any]:
    """The issue's numbers on the pooled cross-validated estimates, and on the final model alone."""
    true = np.array([r["true_dice"] for r in rows])
    predicted = np.array([r["qc_dice"] for r in rows])
    ef_bad = np.array([not (r["ef_error"] <= EF_ERROR) for r in rows])
    bad = bad_volumes(rows)
    flagged = np.array([r["qc_flag"] == CHECK for r in rows])
    rule = np.array([r["rule_flag"] for r in rows])
    score = np.where(rule, 2.0, 1.0 - predicted)
    thresholds = sorted(set(np.round(predicted, 4).tolist()))
    operating = []
    for cut in thresholds:
        operating.append({"threshold": cut, **rates(rule | (predicted < cut), bad)})
    reaching = [o for o in operating if o["sensitivity"] >= 0.90]
    final = np.array([r["stage"] == max(stages) for r in rows])
    by_stage = {str(stage): {"mean_true_dice": float(true[[r["stage"] == stage for r in rows]].mean()),
                             **agreement_stats(predicted[[r["stage"] == stage for r in rows]], true[[r["stage"] == stage for r in rows]])}
                for stage in stages}
    structures = {name: float(np.mean([abs(r[f"qc_dice_{name}"] - r["true_structures"][k]) for r in rows]))
                  for k, name in enumerate(TARGETS) if f"qc_dice_{name}" in rows[0]}
    return {
        "n_volumes": len(rows), "true_dice_spread": [float(true.min()), float(np.median(true)), float(true.max())],
        "estimate": agreement_stats(predicted, true), "mae_structures": structures, "by_stage": by_stage,
        "bad": {"definition": f"true mean Dice < {BAD_DICE} or LV EF error > {EF_ERROR:.0f} points",
                "n": int(bad.sum()), "by_dice": int((true < BAD_DICE).sum()), "by_ef": int(ef_bad.sum())},
        "flag_at_threshold": {"threshold": threshold, **rates(flagged, bad)},
        "rules_alone": rates(rule, bad),
        "roc_auc": roc_auc(score, bad), "roc_auc_dice_only": roc_auc(1.0 - predicted, bad),
        "first_threshold_reaching_sens_0.90": reaching[0] if reaching else None,
        "flag_at_0.80": {"threshold": 0.80, **rates(rule | (predicted < 0.80), bad)},
        "final_model": {**rates(flagged[final], bad[final]),
                        "estimate": agreement_stats(predicted[final], true[final])},
        "dice_only": {**rates(flagged, true < BAD_DICE), "roc_auc": roc_auc(1.0 - predicted, true < BAD_DICE)},
        "at_specificity_0.80": best_at_specificity(score, bad),
        "patients": patient_rates(rows, flagged, bad, score),
    }


def patient_rates(rows: list[dict[str, Any]], flagged: np.ndarray, bad: np.ndarray, score: np.ndarray
                  ) -> dict[str, Any]:
    """Per patient and model (the flag of ``indices.csv``: either phase flagged), against a patient that has a bad
    volume (true Dice below the cut, or its EF off); with the ROC of the patient's worst volume ``score`` (rules,
    then 1 - qc_dice) and the best sensitivity it reaches at specificity >= 0.80 (the cut read off this pool)."""
    patients: dict[tuple[Any, ...], list[Any]] = {}
    for row, flag, wrong, value in zip(rows, flagged, bad, score, strict=True):
        entry = patients.setdefault((row["fold"], row["stage"], row["patient"]), [False, False, -np.inf])
        entry[0], entry[1], entry[2] = entry[0] or bool(flag), entry[1] or bool(wrong), max(entry[2], float(value))
    worst, positive = np.array([e[2] for e in patients.values()]), np.array([e[1] for e in patients.values()])
    return {**rates(np.array([e[0] for e in patients.values()]), positive), "roc_auc": roc_auc(worst, positive),
            "at_specificity_0.80": best_at_specificity(worst, positive)}


def best_at_specificity(score: np.ndarray, positive: np.ndarray, specificity: float = 0.80) -> dict[str, Any] | None:
    """The cut on ``score`` (flag at or above it) with the highest sensitivity among those whose specificity is at
    least ``specificity``; its ``threshold`` is the qc_dice cut (1 - cut) when the cut is below the rules' 2."""
    best = None
    for cut in np.unique(score):
        entry = rates(score >= cut, positive)
        if entry["specificity"] >= specificity and (best is None or entry["sensitivity"] > best["sensitivity"]):
            best = {"threshold": float(1.0 - cut) if cut < 2.0 else None, **entry}
    return best


def markdown(result: dict[str, Any]) -> str:
    """The result as the BENCHMARKS.md section's tables."""
    e, f, fin = result["estimate"], result["flag_at_threshold"], result["final_model"]
    reach = result["first_threshold_reaching_sens_0.90"]
    lines = [
        f"Pool: {result['n_volumes']} volumes (true mean Dice min / median / max "
        f"{' / '.join(f'{v:.3f}' for v in result['true_dice_spread'])}); bad: {result['bad']['definition']}: "
        f"{result['bad']['n']} ({result['bad']['by_dice']} by Dice, {result['bad']['by_ef']} by EF).", "",
        "| measure | value | target |", "|---|---|---|",
        f"| correlation predicted vs true per-volume Dice | {e['r']:.3f} | >= 0.85 |",
        f"| mean absolute error | {e['mae']:.3f} | <= 0.05 |",
        *([f"| MAE per structure (RV / Myo / LV) | {' / '.join(f'{v:.3f}' for v in result['mae_structures'].values())} | |"]
          if result.get("mae_structures") else []),
        f"| sensitivity at --qc-threshold {f['threshold']:.2f} | {f['sensitivity']:.3f} ({f['flagged_bad']}/{f['bad']}) | >= 0.90 |",
        f"| specificity at --qc-threshold {f['threshold']:.2f} | {f['specificity']:.3f} | >= 0.80 |",
        f"| ROC AUC (rules, then 1 - qc_dice) | {result['roc_auc']:.3f} | |",
        f"| ROC AUC (1 - qc_dice alone) | {result['roc_auc_dice_only']:.3f} | |",
        f"| rules alone: sensitivity / specificity | {result['rules_alone']['sensitivity']:.3f} / "
        f"{result['rules_alone']['specificity']:.3f} | |",
    ]
    dice, patients = result["dice_only"], result["patients"]
    lines += [f"| bad by Dice alone (< {BAD_DICE}): sensitivity / specificity at {f['threshold']:.2f}, ROC AUC | "
              f"{dice['sensitivity']:.3f} / {dice['specificity']:.3f}, {dice['roc_auc']:.3f} | |",
              f"| patients (indices.csv flag: either phase) against a bad volume or EF: sensitivity / specificity | "
              f"{patients['sensitivity']:.3f} / {patients['specificity']:.3f} ({patients['n']} patient-models) | |"]
    for label, entry, auc in (("volumes", result.get("at_specificity_0.80"), result["roc_auc"]),
                              ("patients", patients.get("at_specificity_0.80"), patients.get("roc_auc"))):
        if entry:
            cut = "rules only" if entry["threshold"] is None else f"--qc-threshold {entry['threshold']:.4f}"
            lines.append(f"| {label}: best sensitivity at specificity >= 0.80 (cut read off this pool), ROC AUC | "
                         f"{entry['sensitivity']:.3f} at {entry['specificity']:.3f} ({cut}), {auc:.3f} | >= 0.90 |")
    at80 = result["flag_at_0.80"]
    lines.append(f"| --qc-threshold 0.80: sensitivity / specificity | {at80['sensitivity']:.3f} / {at80['specificity']:.3f} | |")
    if reach:
        lines.append(f"| first threshold with sensitivity >= 0.90 (chosen on this pool) | {reach['threshold']:.3f}: "
                     f"specificity {reach['specificity']:.3f} | |")
    lines += [f"| final model: volumes flagged | {fin['flagged']} of {fin['n']} ({100 * fin['flagged'] / fin['n']:.0f} %) | |",
              f"| final model: flagged that are bad / bad volumes | {fin['flagged_bad']} / {fin['bad']} | |",
              f"| final model: estimate MAE / r | {fin['estimate']['mae']:.3f} / {fin['estimate']['r']:.3f} | |",
              *([f"| QC cost at prediction (flip TTA) | {result['cost']['qc']:.2f} s vs {result['cost']['plain']:.2f} s for "
                 f"{result['cost']['volumes']} volumes: ratio {result['cost']['ratio']:.3f} | |"] if "cost" in result else []),
              *([f"| QC cost with a reference model (flip TTA both) | {result['cost']['qc_reference']:.2f} s: ratio "
                 f"{result['cost']['ratio_reference']:.3f} | |"] if "qc_reference" in result.get("cost", {}) else []),
              *([f"| version-1 estimator (mean Dice, its features), same folds: MAE / r / sensitivity / specificity | "
                 f"{v['estimate']['mae']:.3f} / {v['estimate']['r']:.3f} / {v['flag_at_threshold']['sensitivity']:.3f} / "
                 f"{v['flag_at_threshold']['specificity']:.3f} | |"] if (v := result.get("v1_estimator")) else []), "",
              "| epochs | mean true Dice | MAE | r |", "|---|---|---|---|"]
    lines += [f"| {stage} | {s['mean_true_dice']:.3f} | {s['mae']:.3f} | {s['r']:.3f} |" for stage, s in result["by_stage"].items()]
    if ablation := result.get("estimator_ablation"):
        lines += ["", "| estimator (cross-validated by fold) | MAE | r |", "|---|---|---|"]
        lines += [f"| {a['variant']} | {a['mae']:.4f} | {a['r']:.3f} |" for a in ablation]
    if m := result.get("ensemble_members"):
        without, with_ = m["estimate_without_member_features"], m["estimate_with_member_features"]
        lines += ["", f"Snapshot ensembles (each fold's weights after epochs {', '.join(map(str, m['epochs']))}), "
                      f"{m['n_volumes']} held-out volumes, mean true Dice {m['mean_true_dice']:.3f}:", "",
                  "| measure | value |", "|---|---|",
                  f"| r of member agreement (member_dice) with the true Dice | {m['r_member_dice']:.3f} |",
                  f"| r of flip-view agreement (view_dice) with the true Dice | {m['r_view_dice']:.3f} |",
                  f"| estimate without member features: MAE / r | {without['mae']:.3f} / {without['r']:.3f} |",
                  f"| estimate with member features: MAE / r | {with_['mae']:.3f} / {with_['r']:.3f} |"]
    if ref := result.get("with_reference"):
        lines += ["", f"With a QC reference model (`--qc-reference`: each fold's model of the CV {ref['reference_cv']}, "
                      "trained apart on the same patients), the same pool and folds:", "", *markdown(ref).splitlines()]
    return "\n".join(lines) + "\n"


def earlier_cost(path: Path) -> dict[str, Any] | None:
    """The QC cost an earlier results file holds, with the metadata it was measured at; None when there is none (a
    missing file, or one without a cost); a damaged file is a one-line exit."""
    if not path.is_file():
        return None
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        sys.exit(f"qc_benchmark: error: --keep-cost: {path} is not readable JSON ({err}); rerun without --keep-cost")
    if not isinstance(earlier, dict) or not isinstance(earlier.get("cost"), dict):
        return None
    return {**earlier["cost"], "measured": earlier["cost"].get("measured", earlier.get("metadata", {}))}


def reused_pool(cache: Path, stages: tuple[int, ...], only: list[int] | None, reuse: bool,
                predict: Any) -> list[dict[str, Any]]:
    """The pool of ``stages`` (folds ``only``): with ``reuse``, the (fold, stage) pairs already in ``cache`` are taken
    from it and only the others predicted (``predict(have)``); the cache keeps the union, so pools of other stages
    share their predictions."""
    cached = pickle.loads(cache.read_bytes()) if reuse and cache.is_file() else []
    rows = cached + predict({(r["fold"], r["stage"]) for r in cached})
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        tmp.write_bytes(pickle.dumps(rows))
    chosen = [r for r in rows if r["stage"] in stages and (only is None or r["fold"] in only)]
    return sorted(chosen, key=lambda r: (r["fold"], stages.index(r["stage"])))


def cv_folder(text: str) -> Path:
    """An ``argparse`` type for a ``cmrseg cv`` folder: a missing one, or one without its ``config.json``, is a one-line
    usage error before any work."""
    path = existing_folder(text)
    if not (path / "config.json").is_file():
        raise argparse.ArgumentTypeError(f"{text}: not a `cmrseg cv` folder (no config.json)")
    return path


def stages_of(cv_dir: Path, folds: int) -> tuple[int, ...]:
    """The epochs whose checkpoints every fold of ``cv_dir`` kept."""
    kept = [{int(path.stem.split("_")[1]) for path in (fold_dir(cv_dir, k) / "checkpoints").glob("epoch_*.pt")}
            for k in range(folds)]
    return tuple(sorted(set.intersection(*kept)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=existing_folder, default=str(ROOT.parent / "shared" / "data" / "acdc96"))
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "qc_bench")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cv", type=cv_folder, help="an existing `cmrseg cv` folder to pool instead of training "
                                                           "the small U-Nets (its config, folds and checkpoints)")
    parser.add_argument("--stages", type=int, nargs="+", help="with --cv: the epochs whose weights predict the pool "
                                                              "(default: every checkpoint all folds kept; a stage a "
                                                              "fold did not keep is re-trained into "
                                                              "RUNS/<cv>_early/fold_K, the same run stopped there)")
    parser.add_argument("--only", type=int, nargs="+", metavar="FOLD",
                        help="with --cv: pool these folds' volumes only (one fold: cross-validated by its patients)")
    parser.add_argument("--members", type=int, nargs="+", metavar="EPOCH",
                        help="with --cv: also predict every fold's held-out volumes by the snapshot ensemble of its "
                             "weights after these epochs, and measure the members' agreement as a QC signal")
    parser.add_argument("--reference", type=cv_folder,
                        help="with --cv: another `cmrseg cv` on the same folds (a model trained apart): each fold's "
                             "QC reference model (--qc-reference), measured beside the estimate without one")
    parser.add_argument("--write-default", action="store_true",
                        help=f"write the model fitted on the whole pool as cmrseg's default QC model ({DEFAULT_PATH.name})")
    parser.add_argument("--write-default-reference", action="store_true",
                        help="with --reference: write the model with the reference's agreement fitted on the whole pool "
                             f"as cmrseg's default QC model of predictions with --qc-reference ({DEFAULT_REFERENCE_PATH.name})")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--skip-train", action="store_true", help="use the fold runs as they are (all must be there)")
    parser.add_argument("--reuse-pool", action="store_true", help="reuse RUNS/pool.pkl (the predicted pool) when there")
    parser.add_argument("--qc-threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--keep-cost", action="store_true",
                        help="keep the QC cost of the earlier results file (timed when the machine was quiet) instead "
                             "of timing it again; it keeps the date and commit it was measured at")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    if args.cv:
        cv_dir = Path(args.cv)
        config = load_config(cv_dir / "config.json")
        folds = len(list(cv_dir.glob("fold_*")))
        kept_stages = stages_of(cv_dir, folds)
        stages, pool_name = tuple(args.stages or kept_stages), f"_{cv_dir.name}"
        name = pool_name if stages == kept_stages else f"{pool_name}_epochs_{'_'.join(map(str, stages))}"
        early_dir = args.runs / f"{cv_dir.name}_early"
        early_checkpoints(cv_dir, folds, stages, early_dir, args.only)
    else:
        cv_dir, config, folds, stages, name = args.runs / "cv", small_config(args.data), args.folds, STAGES, ""
        pool_name = name
        if not args.skip_train:
            train(config, args.runs, args.folds)
        print(f"trained in {(time.time() - started) / 60:.1f} min", flush=True)
        if args.train_only:
            return 0
    reference = Path(args.reference) if args.cv and args.reference else None
    cache = args.runs / f"pool{pool_name}{'' if reference is None else f'_reference_{reference.name}'}.pkl"
    rows = reused_pool(cache, stages, args.only if args.cv else None, args.reuse_pool, lambda have: pool(
        cv_dir, config, folds, stages, args.only if args.cv else None, early_dir if args.cv else None, have, reference))
    cross_validated_qc(rows, folds, args.qc_threshold, stages, "v1")
    earlier = measure(rows, args.qc_threshold, stages)
    with_reference = None
    if reference is not None:
        cross_validated_qc(rows, folds, args.qc_threshold, stages, "reference")
        with_reference = {**measure(rows, args.qc_threshold, stages), "reference_cv": reference.name,
                          "estimator_ablation": estimator_ablation(rows, base=DEFAULT_REFERENCE_FEATURES)}
    cross_validated_qc(rows, folds, args.qc_threshold, stages)
    result = measure(rows, args.qc_threshold, stages)
    result["v1_estimator"] = {key: earlier[key] for key in ("estimate", "flag_at_threshold", "roc_auc", "final_model")}
    result["stages"] = list(stages)
    result["estimator_ablation"] = estimator_ablation(rows)
    kept = earlier_cost(RESULTS / f"qc_benchmark{name}.json") if args.keep_cost else None
    if kept is not None:
        result["cost"] = kept
    else:
        fold0 = config_validation_volumes(clone_config(config, folds=folds, fold=0))
        result["cost"] = {**qc_cost(fold_dir(cv_dir, 0), fold0, epoch_checkpoint(max(stages)),
                                    reference=None if reference is None else fold_dir(reference, 0)),
                          "measured": run_metadata(ROOT)}
    result["metadata"] = run_metadata(ROOT)
    result["minutes"] = (time.time() - started) / 60
    ensembled: list[dict[str, Any]] = []
    if args.cv and args.members:
        cached = args.runs / f"pool{pool_name}_members.pkl"
        if args.reuse_pool and cached.is_file():
            ensembled = pickle.loads(cached.read_bytes())
        else:
            ensembled = member_pool(cv_dir, config, folds, args.members)
            cached.write_bytes(pickle.dumps(ensembled))
        result["ensemble_members"] = {"epochs": args.members, **member_measure(rows, ensembled, folds)}
    if with_reference is not None:
        result["with_reference"] = with_reference
    everything = fit(np.stack([features(r["signals"], DEFAULT_FEATURES) for r in rows + ensembled]),
                     targets_of(rows + ensembled, "current"), names=DEFAULT_FEATURES)
    everything.cv = {**result["estimate"], "folds": folds, "flag_at_threshold": result["flag_at_threshold"]}
    everything.source = {"what": f"benchmarks/qc_benchmark.py --cv {cv_dir.name} pool: {len(rows + ensembled)} held-out "
                                 f"volumes of {folds} patient-wise folds, predicted after epochs {list(stages)}"
                                 + (f" and by snapshot ensembles of epochs {args.members}" if ensembled else "")
                                 + ", flip TTA", "commit": result["metadata"].get("commit")}
    result["pool_model"] = everything.to_dict()
    if with_reference is not None:
        referenced = fit(np.stack([features(r["signals"], DEFAULT_REFERENCE_FEATURES) for r in rows]),
                         targets_of(rows, "reference"), REFERENCE_ALPHA, DEFAULT_REFERENCE_FEATURES)
        referenced.cv = {**with_reference["estimate"], "folds": folds,
                         "flag_at_threshold": with_reference["flag_at_threshold"]}
        referenced.source = {**everything.source, "what": f"benchmarks/qc_benchmark.py --cv {cv_dir.name} --reference "
                             f"{reference.name} pool: {len(rows)} held-out volumes of {folds} patient-wise folds, predicted "
                             f"after epochs {list(stages)}, flip TTA, each with the agreement of its fold's reference"}
        result["pool_model_reference"] = referenced.to_dict()
    if args.write_default:
        write_text_atomic(DEFAULT_PATH, default_json(everything))
    if args.write_default_reference and with_reference is not None:
        write_text_atomic(DEFAULT_REFERENCE_PATH, default_json(referenced))
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / f"qc_benchmark{name}.json", result)
    write_text_atomic(RESULTS / f"qc_benchmark{name}.md", markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
