"""k-fold cross-validation: train one run per fold, score each on its held-out patients, tabulate.

    OUT/config.json        the base config (a later call with another config is refused)
    OUT/fold_K/            a normal run folder per fold (resumed when unfinished, skipped when finished)
    OUT/cv.csv, cv.json    per-fold and overall per-structure Dice and HD95, training minutes
    OUT/cv_per_image.csv   every held-out slice's scores, to find the worst cases
    OUT/ensemble/          with ``ensemble``: the soft-voting ensemble of the fold models (a run folder)

Folds split by patient (``group_pairs``) with the config's split seed (``split_seed``, else ``seed``), so every fold sees the same partition.
The "mean" row pools all held-out slices (per-image Dice, absent-in-both = 1), which for equal folds is
the mean of the fold rows.
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg import runs
from cmrseg.cli import extension
from cmrseg.config import ExperimentConfig
from cmrseg.constants import STRUCTURES
from cmrseg.data.dataset import prepare_data
from cmrseg.errors import CmrsegError
from cmrseg.evaluation import score_samples
from cmrseg.locks import run_lock
from cmrseg.metrics import aggregate
from cmrseg.outputs import check_output_dir, write_marker
from cmrseg.training import clone_config, continue_run
from cmrseg.utils import write_json_atomic, write_text_atomic

COUNT_COLUMNS = [f"{kind}_{s}" for kind in ("misses", "false_detections") for s in STRUCTURES]
TABLE_COLUMNS = ["fold", "n_images", *[f"dice_{s}" for s in (*STRUCTURES, "mean")],
                 *[f"hd95_{s}" for s in (*STRUCTURES, "mean")], *COUNT_COLUMNS, "train_minutes"]
# Keys that do not change what a fold trains (the fold index, how it is scored); the rest must match on resume.
_NOT_TRAINING_KEYS = ("folds", "fold", "tta", "tta_scales", "postprocess")


@dataclass
class CvResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    ensemble_dir: Path | None = None
    per_image: list[dict[str, Any]] = field(default_factory=list)


def fold_dir(out_dir: Path, fold: int) -> Path:
    return out_dir / f"fold_{fold}"


def _comparable(config: ExperimentConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    for key in _NOT_TRAINING_KEYS:
        data.pop(key, None)
    return data


def _check_same_config(out_dir: Path, config: ExperimentConfig, write: bool = True) -> None:
    """Refuse to mix folds of different recipes in one folder (resume must continue the same CV); then save it."""
    path = out_dir / runs.CONFIG_FILE
    if path.is_file():
        saved = runs.read_run_config(out_dir)
        if _comparable(saved) != _comparable(config):
            raise CmrsegError(f"{out_dir}: holds a cross-validation of another config; choose another --out")
    if write:
        write_json_atomic(path, config.model_dump(mode="json"))


def final_checkpoint(config: ExperimentConfig) -> str:
    """The last epoch's evaluated (EMA when enabled) weights, which training always saves."""
    return f"{runs.CHECKPOINT_DIR}/epoch_{config.epochs:04d}.pt"


def _score_fold(config: ExperimentConfig, run_dir: Path, checkpoint: str, tta: bool, postprocess: bool) -> dict[str, Any]:
    """Dice/HD95 of the fold's weights on its held-out slices."""
    summary, _ = score_samples(run_dir, prepare_data(config).val, checkpoint=checkpoint, tta=tta, postprocess=postprocess,
                               device=config.device, class_weights=config.postprocess.class_weights,
                               tta_scales=config.tta_scales)
    return summary


def _row(fold: int | str, summary: dict[str, Any], minutes: float) -> dict[str, Any]:
    row: dict[str, Any] = {"fold": fold, "n_images": summary["n_images"]}
    row.update({f"dice_{k}": summary["dice"][k] for k in (*STRUCTURES, "mean")})
    row.update({f"hd95_{k}": summary["hd95"][k] for k in (*STRUCTURES, "mean")})
    row.update({f"{kind}_{k}": summary[kind][k] for kind in ("misses", "false_detections") for k in STRUCTURES})
    row["train_minutes"] = minutes
    return row


def _csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


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
    checkpoint: str = "final",
    tta: bool | None = None,
    postprocess: bool | None = None,
    progress: bool = True,
) -> CvResult:
    """Train and score ``folds`` folds (or just ``only``) into ``out_dir``; finished folds are not retrained.

    Folds are scored with their ``final`` epoch's weights: picking ``best`` selects the epoch on the
    held-out slices themselves, which flatters the estimate. ``tta``/``postprocess`` override how the
    fold models predict (default: the config's; its ``tta_scales`` and ``postprocess.class_weights`` always apply). With
    ``ensemble`` the fold models are combined into ``out_dir/ensemble`` (needs every fold).
    """
    selected = check_cv_arguments(config, folds, ensemble, only, checkpoint)
    out = Path(out_dir) if out_dir is not None else Path("runs") / f"cv-{config.model_info.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    base = clone_config(config, folds=folds, fold=None)
    check_output_dir(out, "cv", legacy=(runs.CONFIG_FILE, "fold_*"))
    _check_same_config(out, base, write=False)
    with run_lock(out, "cv"):
        write_marker(out, "cv")
        _check_same_config(out, base)
        return _run_folds(out, base, folds, selected, ensemble, checkpoint, tta, postprocess, progress)


def check_cv_arguments(config: ExperimentConfig, folds: int, ensemble: bool, only: list[int] | None, checkpoint: str) -> list[int]:
    """Validate every cv argument against the config and the data before anything is written; returns the folds to run."""
    if folds < 2:
        raise CmrsegError(f"--folds must be at least 2, got {folds}")
    selected = sorted(set(only)) if only else list(range(folds))
    if any(not 0 <= k < folds for k in selected):
        raise CmrsegError(f"--only: folds must be in 0..{folds - 1}, got {selected}")
    if ensemble and len(selected) != folds:
        raise CmrsegError("--ensemble needs every fold; drop --only")
    saved = {config.epochs, *range(config.checkpoint_every, config.epochs + 1, config.checkpoint_every)}
    choices = ["final", "best", "last", runs.BEST_CHECKPOINT, runs.LAST_CHECKPOINT,
               *(f"{runs.CHECKPOINT_DIR}/epoch_{epoch:04d}.pt" for epoch in sorted(saved))]
    if checkpoint not in choices:
        raise CmrsegError(f"--checkpoint '{checkpoint}': training saves only {', '.join(choices[:5])} "
                          f"and {runs.CHECKPOINT_DIR}/epoch_NNNN.pt for epochs {', '.join(map(str, sorted(saved)))}")
    prepare_data(clone_config(config, folds=folds, fold=0))
    return selected


def _run_folds(out: Path, base: ExperimentConfig, folds: int, selected: list[int], ensemble: bool, checkpoint: str,
               tta: bool | None, postprocess: bool | None, progress: bool) -> CvResult:
    """Train, score and tabulate the ``selected`` folds of the checked cv into ``out`` (and its ensemble)."""
    tta = base.tta if tta is None else tta
    postprocess = base.postprocess.largest_component if postprocess is None else postprocess
    rows: list[dict[str, Any]] = []
    per_image: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    minutes_per_fold: list[float] = []
    for k in selected:
        fold_config = clone_config(base, fold=k)
        run_dir = fold_dir(out, k)
        continue_run(fold_config, run_dir, progress)
        chosen = final_checkpoint(fold_config) if checkpoint == "final" else checkpoint
        summary = _score_fold(fold_config, run_dir, chosen, tta, postprocess)
        minutes = sum(row["seconds"] for row in runs.read_history(run_dir)) / 60.0
        rows.append(_row(k, summary, minutes))
        per_image.extend({"fold": k, **image} for image in summary["per_image"])
        summaries.append(summary)
        minutes_per_fold.append(minutes)
    overall = _pooled(summaries)
    rows.append(_row("mean", overall, float(np.mean(minutes_per_fold))))
    result = CvResult(out, rows, overall, per_image=per_image)
    _write_tables(result, base, checkpoint, tta, postprocess)
    if ensemble:
        result.ensemble_dir = _make_fold_ensemble(out, base, folds)
    return result


def _pooled(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean Dice/HD95 over every held-out slice of every fold."""
    return aggregate([image for summary in summaries for image in summary["per_image"]])


def _write_tables(result: CvResult, config: ExperimentConfig, checkpoint: str, tta: bool, postprocess: bool) -> None:
    write_text_atomic(result.out_dir / "cv.csv", _csv_text(result.rows, TABLE_COLUMNS))
    image_columns = ["fold", "id", *[f"dice_{s}" for s in (*STRUCTURES, "mean")], *[f"hd95_{s}" for s in (*STRUCTURES, "mean")]]
    flat = [{"fold": im["fold"], "id": im["id"], **{f"dice_{k}": v for k, v in im["dice"].items()},
             **{f"hd95_{k}": v for k, v in im["hd95"].items()}} for im in result.per_image]
    write_text_atomic(result.out_dir / "cv_per_image.csv", _csv_text(flat, image_columns))
    write_json_atomic(result.out_dir / "cv.json", {
        "folds": config.folds, "checkpoint": checkpoint, "rows": result.rows, "mean": result.summary,
        "tta": tta, "tta_scales": config.tta_scales if tta else [1.0], "postprocess": postprocess,
        "class_weights": config.postprocess.class_weights,
    })


def _make_fold_ensemble(out: Path, base: ExperimentConfig, folds: int) -> Path:
    """The fold models as one soft-voting run folder that predicts as ``base`` does (TTA, zooms)."""
    from cmrseg.ensemble import make_ensemble

    target = out / "ensemble"
    if (target / runs.CONFIG_FILE).is_file():
        return target
    return make_ensemble([fold_dir(out, k) for k in range(folds)], target, tta=base.tta, tta_scales=base.tta_scales)


def _cmd_cv(args: argparse.Namespace) -> None:
    from cmrseg.cli import _load_config_with_overrides

    config = _load_config_with_overrides(args.config, args.set)
    if config is None:
        raise CmrsegError("cv needs --config CFG")
    result = cross_validate(config, args.folds, args.out, ensemble=args.ensemble, only=args.only,  # type: ignore[arg-type]
                            checkpoint=args.checkpoint, tta=args.tta, postprocess=args.postprocess, progress=not args.quiet)
    print(format_cv_table(result.rows))
    print(f"wrote {result.out_dir / 'cv.csv'} and cv.json")
    if result.ensemble_dir is not None:
        print(f"fold ensemble: {result.ensemble_dir} (its score on these folds is not held-out: every slice trained a member)")


@extension
def _register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cv", help="k-fold cross-validation by patient: per-fold and mean Dice/HD95")
    parser.add_argument("--config", required=True, help="JSON config of the recipe")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", help="CV folder (default runs/cv-<model>-<time>); rerun with it to resume")
    parser.add_argument("--ensemble", action="store_true", help="also write OUT/ensemble, the fold models' soft vote")
    parser.add_argument("--only", type=int, action="append", metavar="K", help="run just fold K (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--checkpoint", default="final",
                        help="weights to score: final (last epoch, default), best (selected on the held-out fold: optimistic)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help="score with flip TTA (default: config)")
    parser.add_argument("--postprocess", action=argparse.BooleanOptionalAction, default=None,
                        help="score with largest-component clean-up (default: config)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_cmd_cv)
