"""k-fold cross-validation: train one run per fold, score each on its held-out patients, tabulate.

    OUT/config.json        the base config (a later call with another config is refused)
    OUT/fold_K/            a normal run folder per fold (resumed when unfinished, skipped when finished)
    OUT/cv.csv, cv.json    per-fold and overall per-structure Dice and HD95, training minutes
    OUT/cv_per_image.csv   every held-out slice's scores, to find the worst cases (on volume data, each slice as cut
                           from its volume's prediction, the 3D clean-up included: one prediction per volume)
    OUT/ensemble/          with ``ensemble``: the soft-voting ensemble of the fold models (a run folder)
    OUT/cv_volumes.json    on NIfTI volumes: every held-out volume scored in 3D (ED/ES, slice positions) with the
                           clinical indices; cv_indices.csv / cv_indices_true.csv and cv_agreement_*.png beside it

Folds train on the sweep engines (:mod:`cmrseg.workflows.sweep.engines`): one after another here, in ``workers``
local processes, or as Ray tasks (``ray_address``); scoring and the tables stay in this process, so the
tables do not depend on the engine.

Folds split by patient (``group_pairs``) with the config's split seed (``split_seed``, else ``seed``), so every fold sees the same partition.
The "mean" row pools all held-out slices (per-image Dice, absent-in-both = 1), which for equal folds is
the mean of the fold rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg import runs
from cmrseg.config import ExperimentConfig
from cmrseg.constants import STRUCTURES
from cmrseg.data.dataset import prepare_data
from cmrseg.errors import CmrsegError
from cmrseg.evaluation import score_samples
from cmrseg.inference import PredictSettings
from cmrseg.io.locks import run_lock
from cmrseg.metrics import aggregate
from cmrseg.io.outputs import check_output_dir, write_marker
from cmrseg.workflows.sweep.engines import TrainJob, check_engine, run_jobs
from cmrseg.training.trainer import clone_config
from cmrseg.io.atomic import write_csv_atomic, write_json_atomic

CV_SETTINGS = PredictSettings(checkpoint="final")
"""How folds are scored by default: the config's TTA and clean-up, with the last epoch's weights."""
COUNT_COLUMNS = [f"{kind}_{s}" for kind in ("misses", "false_detections") for s in STRUCTURES]
TABLE_COLUMNS = ["fold", "n_images", *[f"dice_{s}" for s in (*STRUCTURES, "mean")],
                 *[f"hd95_{s}" for s in (*STRUCTURES, "mean")], *COUNT_COLUMNS, "train_minutes"]


@dataclass
class CvResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    ensemble_dir: Path | None = None
    per_image: list[dict[str, Any]] = field(default_factory=list)
    volumes: dict[str, Any] | None = None


def fold_dir(out_dir: Path, fold: int) -> Path:
    return out_dir / f"fold_{fold}"


def _check_same_config(out_dir: Path, config: ExperimentConfig, write: bool = True) -> None:
    """Refuse to mix folds of different recipes in one folder (resume must continue the same CV, same epochs);
    then save it."""
    path = out_dir / runs.CONFIG_FILE
    if path.is_file():
        if not runs.same_training(runs.read_run_config(out_dir), config):
            raise CmrsegError(f"{out_dir}: holds a cross-validation of another config; choose another folder", key="out_dir")
    if write:
        runs.write_run_config(out_dir, config)


def final_checkpoint(config: ExperimentConfig) -> str:
    """The last epoch's evaluated (EMA when enabled) weights, which training always saves."""
    return runs.epoch_checkpoint(config.epochs)


def _fold_settings(config: ExperimentConfig, settings: PredictSettings) -> PredictSettings:
    """``settings`` for one fold: checkpoint ``final`` becomes the file of its last epoch."""
    return replace(settings, checkpoint=final_checkpoint(config) if settings.checkpoint == "final" else settings.checkpoint)


@dataclass
class FoldScores:
    """One fold's held-out slice scores and, on volume data, its held-out volumes and their predicted labels."""

    summary: dict[str, Any]
    volumes: list[Any] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    qc: Any = None
    """On volume data, the held-out volumes' quality control (:class:`cmrseg.qc.QcResult`)."""


def _score_fold(config: ExperimentConfig, run_dir: Path, settings: PredictSettings) -> FoldScores:
    """Dice/HD95 of the fold's weights on its held-out slices. On volume data each held-out volume is predicted
    once (3D clean-up) and its slices are scored as cut from that prediction, which the volume report reuses."""
    from cmrseg.evaluation.volume_scoring import held_out_with_qc, slice_scores, trained_on_volumes

    fold_settings = _fold_settings(config, settings)
    if not trained_on_volumes(config):
        return FoldScores(score_samples(run_dir, prepare_data(config).val, fold_settings)[0])
    volumes, masks, checked = held_out_with_qc(run_dir, config, fold_settings)
    return FoldScores(slice_scores(volumes, masks), volumes, masks, checked)


def _volume_report(out: Path, scores: list[FoldScores]) -> dict[str, Any] | None:
    """On volume data: every held-out volume as predicted by the model of its fold, scored per volume with the
    clinical indices and their agreement, written as ``cv_volumes.json``, ``cv_indices*.csv`` and plots."""
    if not any(fold.volumes for fold in scores):
        return None
    from cmrseg.evaluation.volume_scoring import write_volume_report

    from cmrseg.qc.assess import merge

    return write_volume_report(out, [v for fold in scores for v in fold.volumes], [m for fold in scores for m in fold.masks],
                               "cv", merge([fold.qc for fold in scores if fold.qc is not None]))


def _row(fold: int | str, summary: dict[str, Any], minutes: float) -> dict[str, Any]:
    row: dict[str, Any] = {"fold": fold, "n_images": summary["n_images"]}
    row.update({f"dice_{k}": summary["dice"][k] for k in (*STRUCTURES, "mean")})
    row.update({f"hd95_{k}": summary["hd95"][k] for k in (*STRUCTURES, "mean")})
    row.update({f"{kind}_{k}": summary[kind][k] for kind in ("misses", "false_detections") for k in STRUCTURES})
    row["train_minutes"] = minutes
    return row


def format_cv_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table: one line per fold plus the pooled mean (whose counts are totals); Dice and HD95 (px)
    per structure, then the misses and false detections per structure."""
    names = (*STRUCTURES, "mean")
    header = (f"{'fold':<6}{'n':>4}" + "".join(f"{'Dice ' + s:>10}" for s in names) + "".join(f"{'HD95 ' + s:>10}" for s in names)
              + "".join(f"{'miss ' + s:>9}" for s in STRUCTURES) + "".join(f"{'false ' + s:>10}" for s in STRUCTURES)
              + f"{'train min':>11}")
    lines = [header]
    for row in rows:
        cells = "".join(f"{row[f'dice_{s}']:>10.4f}" for s in names) + "".join(f"{row[f'hd95_{s}']:>10.2f}" for s in names)
        counts = "".join(f"{row[f'misses_{s}']:>9}" for s in STRUCTURES) + "".join(f"{row[f'false_detections_{s}']:>10}" for s in STRUCTURES)
        lines.append(f"{row['fold']!s:<6}{row['n_images']:>4}{cells}{counts}{row['train_minutes']:>11.2f}")
    return "\n".join(lines)


def cross_validate(
    config: ExperimentConfig,
    folds: int = 5,
    out_dir: str | Path | None = None,
    ensemble: bool = False,
    only: list[int] | None = None,
    settings: PredictSettings = CV_SETTINGS,
    progress: bool = True,
    workers: int = 1,
    ray_address: str | None = None,
) -> CvResult:
    """Train and score ``folds`` folds (or just ``only``) into ``out_dir``; finished folds are not retrained.

    ``settings`` say how the fold models predict; their None fields take ``config``'s values (not the
    fold folders'), and device ``auto`` takes ``config.device``. By default (:data:`CV_SETTINGS`) folds
    are scored with their ``final`` epoch's weights: checkpoint ``best`` selects the epoch on the
    held-out slices themselves, which flatters the estimate. With ``ensemble`` the fold models are
    combined into ``out_dir/ensemble`` (needs every fold). Unfinished folds train in ``workers`` local
    processes or on the Ray cluster at ``ray_address`` (``local``: a throwaway one on this machine).
    """
    check_engine(workers, ray_address)
    selected = check_cv_arguments(config, folds, ensemble, only, settings.checkpoint)
    out = Path(out_dir) if out_dir is not None else Path("runs") / f"cv-{config.model_info.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    base = clone_config(config, folds=folds, fold=None)
    check_output_dir(out, "cv", legacy=(runs.CONFIG_FILE, "fold_*"))
    _check_same_config(out, base, write=False)
    with run_lock(out, "cv"):
        write_marker(out, "cv")
        _check_same_config(out, base)
        _train_folds(out, base, selected, workers, ray_address, progress)
        return _run_folds(out, base, folds, selected, ensemble, settings)


def check_cv_arguments(config: ExperimentConfig, folds: int, ensemble: bool, only: list[int] | None, checkpoint: str) -> list[int]:
    """Validate every cv argument against the config and the data before anything is written; returns the folds to run."""
    if folds < 2:
        raise CmrsegError(f"folds must be at least 2, got {folds}", key="folds")
    selected = sorted(set(only)) if only else list(range(folds))
    if any(not 0 <= k < folds for k in selected):
        raise CmrsegError(f"only: folds must be in 0..{folds - 1}, got {selected}", key="only")
    if ensemble and len(selected) != folds:
        raise CmrsegError("ensemble needs every fold; select none", key="ensemble")
    saved = {config.epochs, *range(config.checkpoint_every, config.epochs + 1, config.checkpoint_every)}
    choices = ["final", "best", "last", runs.BEST_CHECKPOINT, runs.LAST_CHECKPOINT,
               *(f"{runs.CHECKPOINT_DIR}/epoch_{epoch:04d}.pt" for epoch in sorted(saved))]
    if checkpoint not in choices:
        raise CmrsegError(f"checkpoint '{checkpoint}': training saves only {', '.join(choices[:5])} "
                          f"and {runs.CHECKPOINT_DIR}/epoch_NNNN.pt for epochs {', '.join(map(str, sorted(saved)))}",
                          key="checkpoint")
    prepare_data(clone_config(config, folds=folds, fold=0))
    return selected


def _train_folds(out: Path, base: ExperimentConfig, selected: list[int], workers: int, ray_address: str | None,
                 progress: bool) -> None:
    """Bring every ``selected`` fold to ``base.epochs`` on the engine; a failed fold stops the cv with its error."""
    jobs = [TrainJob(k, clone_config(base, fold=k), fold_dir(out, k)) for k in selected]
    unfinished = [job for job in jobs if runs.run_state(job.run_dir, job.config.epochs) != "finished"]
    for _fold, error in run_jobs(unfinished, workers, ray_address, progress):
        if error:
            raise CmrsegError(error)


def _run_folds(out: Path, base: ExperimentConfig, folds: int, selected: list[int], ensemble: bool,
               settings: PredictSettings) -> CvResult:
    """Score and tabulate the trained ``selected`` folds of the checked cv in ``out`` (and make their ensemble)."""
    resolved = replace(settings, device=base.device if settings.device == "auto" else settings.device).resolve(base)
    rows: list[dict[str, Any]] = []
    per_image: list[dict[str, Any]] = []
    scores: list[FoldScores] = []
    minutes_per_fold: list[float] = []
    for k in selected:
        run_dir = fold_dir(out, k)
        scores.append(_score_fold(clone_config(base, fold=k), run_dir, resolved))
        summary = scores[-1].summary
        minutes = sum(row["seconds"] for row in runs.read_history(run_dir)) / 60.0
        rows.append(_row(k, summary, minutes))
        per_image.extend({"fold": k, **image} for image in summary["per_image"])
        minutes_per_fold.append(minutes)
    overall = _pooled([fold.summary for fold in scores])
    rows.append(_row("mean", overall, float(np.mean(minutes_per_fold))))
    result = CvResult(out, rows, overall, per_image=per_image)
    _write_tables(result, base, resolved)
    result.volumes = _volume_report(out, scores)
    if ensemble:
        result.ensemble_dir = _make_fold_ensemble(out, base, folds)
    return result


def _pooled(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean Dice/HD95 over every held-out slice of every fold."""
    return aggregate([image for summary in summaries for image in summary["per_image"]])


def _write_tables(result: CvResult, config: ExperimentConfig, settings: PredictSettings) -> None:
    write_csv_atomic(result.out_dir / "cv.csv", result.rows, TABLE_COLUMNS)
    image_columns = ["fold", "id", *[f"dice_{s}" for s in (*STRUCTURES, "mean")], *[f"hd95_{s}" for s in (*STRUCTURES, "mean")]]
    flat = [{"fold": im["fold"], "id": im["id"], **{f"dice_{k}": v for k, v in im["dice"].items()},
             **{f"hd95_{k}": v for k, v in im["hd95"].items()}} for im in result.per_image]
    write_csv_atomic(result.out_dir / "cv_per_image.csv", flat, image_columns)
    write_json_atomic(result.out_dir / "cv.json", {
        "folds": config.folds, "checkpoint": settings.checkpoint, "rows": result.rows, "mean": result.summary,
        "tta": settings.tta, "tta_scales": list(settings.tta_scales or (1.0,)), "postprocess": settings.postprocess,
        "class_weights": settings.class_weights,
    })


def _make_fold_ensemble(out: Path, base: ExperimentConfig, folds: int) -> Path:
    """The fold models as one soft-voting run folder that predicts as ``base`` does (TTA, zooms)."""
    from cmrseg.workflows.ensemble import make_ensemble

    target = out / "ensemble"
    if (target / runs.CONFIG_FILE).is_file():
        return target
    return make_ensemble([fold_dir(out, k) for k in range(folds)], target, tta=base.tta, tta_scales=base.tta_scales)

