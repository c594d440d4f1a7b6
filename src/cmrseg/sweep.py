"""Sweeps: one training per choice of one or more config keys, compared in a table and plots.

    SWEEP_DIR/sweep.json        the base config and the swept keys and values (what the report reads)
    SWEEP_DIR/runs/<slug>/      one ordinary run folder per choice (see :mod:`cmrseg.runs`)
    SWEEP_DIR/sweep.csv         choice, best validation Dice per structure, final losses, minutes
    SWEEP_DIR/loss_curves.png   train and validation loss of every choice, overlaid
    SWEEP_DIR/best_dice.png     best validation Dice per structure, one bar per choice
    SWEEP_DIR/ensemble/         with ``ensemble``: the soft-voting ensemble of every choice (a run folder),
                                e.g. of ``--set seed=0,1`` trained side by side with ``--workers 2``

Running the same command again resumes: finished runs are skipped and half-finished ones continue
from their ``last.pt``. Trials run one after another, in local processes (``workers``) or as Ray
tasks on a cluster (``ray_address``); Ray is imported only then, so it stays an optional extra.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmrseg.config import parse_override_value
from cmrseg.constants import STRUCTURES
from cmrseg.errors import CmrsegError

SWEEP_FILE = "sweep.json"
TABLE_FILE = "sweep.csv"
LOSS_PLOT = "loss_curves.png"
SCORE_PLOT = "best_dice.png"
RUNS_DIR = "runs"

SCORE_COLUMNS = [f"dice_{name}" for name in (*STRUCTURES, "mean")]
TABLE_COLUMNS = ["choice", "status", "epochs_done", "best_epoch", *SCORE_COLUMNS,
                 "final_train_loss", "final_val_loss", "minutes", "run_dir"]


class SweepInterrupted(CmrsegError):
    """Ctrl-C during a sweep; finished epochs are kept and the same command resumes."""


def split_choices(raw: str) -> list[str]:
    """Split ``V1,V2,...`` at commas outside brackets, braces and quotes (so JSON lists stay whole)."""
    parts, depth, quote, start = [], 0, "", 0
    for index, char in enumerate(raw):
        if quote:
            quote = "" if char == quote and raw[index - 1] != "\\" else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(raw[start:index])
            start = index + 1
    parts.append(raw[start:])
    return [part.strip() for part in parts]


def parse_sets(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["optimizer_info.lr=1e-1,1e-2"]`` -> ``{"optimizer_info.lr": [0.1, 0.01]}``, checked for mistakes."""
    if not items:
        raise CmrsegError("sweep needs at least one --set KEY=V1,V2,...")
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise CmrsegError(f"--set '{item}': expected KEY=V1,V2,...")
        if key in grid:
            raise CmrsegError(f"--set: key '{key}' is given twice")
        choices = split_choices(raw)
        if any(not choice for choice in choices):
            raise CmrsegError(f"--set '{item}': empty value in the list")
        grid[key] = [parse_override_value(choice) for choice in choices]
    return grid


def value_text(value: Any) -> str:
    """Short readable form of a value: a transform list as ``Flip+Affine``, JSON for the rest."""
    if isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value):
        return "+".join(str(v["name"]) for v in value) or "[]"
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    leaves = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: leaf if leaves.count(leaf) == 1 else key for key, leaf in zip(keys, leaves)}


def _slug(label: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._=+-]+", "-", label).strip("-.")
    if len(slug) > 60:
        slug = f"{slug[:50]}-{hashlib.sha1(label.encode()).hexdigest()[:8]}"
    return slug or "choice"


@dataclass
class Trial:
    """One choice of the grid: its label, run folder and full config."""

    label: str
    values: dict[str, Any]
    run_dir: Path
    config: Any


def expand_grid(base: Any, grid: dict[str, list[Any]], sweep_dir: Path) -> list[Trial]:
    """Every combination of the grid as a validated config (a bad key or value fails before any training)."""
    from cmrseg.config import apply_overrides

    short = _short_keys(list(grid))
    trials, seen = [], set()
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        label = " ".join(f"{short[key]}={value_text(value)}" for key, value in values.items())
        slug = _slug(label.replace(" ", "_"))
        if slug in seen:
            raise CmrsegError(f"--set: choice '{label}' appears twice")
        seen.add(slug)
        trials.append(Trial(label, values, sweep_dir / RUNS_DIR / slug, apply_overrides(base, values)))
    return trials


def trial_state(trial: Trial) -> str:
    """``new``, ``partial`` (has a ``last.pt`` short of the epochs) or ``finished``.

    A run folder trained from another config is a user mistake (a reused --out), not something to resume;
    more ``epochs`` extend a run (see :func:`cmrseg.runs.same_training`).
    """
    from cmrseg import runs

    state = runs.run_state(trial.run_dir, trial.config.epochs)
    if state != "new" and not runs.same_training(runs.read_run_config(trial.run_dir), trial.config, extend_epochs=True):
        raise CmrsegError(f"{trial.run_dir}: holds a run of another config; choose another --out for this sweep")
    return state


def run_trial(config_json: dict[str, Any], run_dir: str, progress: bool = False) -> str:
    """Train (or resume) one trial; returns ``""`` on success or the one-line error of a failed run.

    A failed choice (e.g. a diverging learning rate) is a result of the sweep, so it is reported, not raised.
    """
    from cmrseg.config import config_from_dict
    from cmrseg.training import TrainingInterrupted, continue_run

    try:
        continue_run(config_from_dict(config_json), run_dir, progress=progress)
    except TrainingInterrupted:
        raise
    except CmrsegError as err:
        return str(err)
    return ""


def _limit_threads(threads: int) -> None:
    """Worker initialiser: give each process its share of the cores instead of all of them."""
    import torch

    torch.set_num_threads(threads)


def _run_local(jobs: list[Trial], workers: int, progress: bool) -> Iterator[tuple[Trial, str]]:
    if workers <= 1:
        for trial in jobs:
            yield trial, run_trial(trial.config.model_dump(mode="json"), str(trial.run_dir), progress)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_limit_threads, initargs=(threads,)) as pool:
        futures = {pool.submit(run_trial, trial.config.model_dump(mode="json"), str(trial.run_dir)): trial
                   for trial in jobs}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CmrsegError("--ray-address needs Ray: pip install 'cmrseg[distributed]'") from None
    return ray


def _run_ray(jobs: list[Trial], address: str) -> Iterator[tuple[Trial, str]]:
    """Each trial is a Ray task asking for ``threads`` CPUs (1 by default); Ray places them on the cluster.

    The sweep folder and the data paths must be on storage every node sees (shared filesystem).
    """
    ray = _import_ray()
    ray.init(address=None if address == "local" else address, log_to_driver=False)
    try:
        pending = {}
        for trial in jobs:
            task = ray.remote(num_cpus=trial.config.threads or 1)(run_trial)
            pending[task.remote(trial.config.model_dump(mode="json"), str(trial.run_dir))] = trial
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done[0]), ray.get(done[0])
    finally:
        ray.shutdown()


def trial_row(trial: Trial, error: str = "") -> dict[str, Any]:
    """One ``sweep.csv`` row from the run folder's history: scores at the best epoch, last losses, time."""
    from cmrseg import runs

    history = runs.read_history(trial.run_dir)
    row: dict[str, Any] = {"choice": trial.label, **{key: value_text(v) for key, v in trial.values.items()},
                           "epochs_done": len(history), "run_dir": f"{RUNS_DIR}/{trial.run_dir.name}"}
    if error:
        row["status"] = f"failed: {error}"
    else:
        row["status"] = "finished" if len(history) >= trial.config.epochs else "incomplete"
    if history:
        scored = [r for r in history if not math.isnan(r.get("dice_mean", math.nan))]
        best = max(scored, key=lambda r: r["dice_mean"]) if scored else {}
        row.update({"best_epoch": int(best["epoch"]) if best else "",
                    **{col: round(best[col], 4) if best else "" for col in SCORE_COLUMNS},
                    "final_train_loss": round(history[-1]["train_loss"], 4),
                    "final_val_loss": round(history[-1]["val_loss"], 4),
                    "minutes": round(sum(r["seconds"] for r in history) / 60, 2)})
    return row


def write_table(rows: list[dict[str, Any]], keys: Sequence[str], path: Path) -> None:
    """``sweep.csv`` with the swept keys as extra columns after ``choice``; written atomically."""
    from cmrseg.utils import write_csv_atomic

    write_csv_atomic(path, rows, [TABLE_COLUMNS[0], *keys, *TABLE_COLUMNS[1:]])


def read_table(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def plot_losses(histories: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Train loss (left) and validation loss (right) per epoch, one colour per choice."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from cmrseg.plots import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for index, (label, history) in enumerate(histories.items()):
        epochs = [row["epoch"] for row in history]
        for ax, column in zip(axes, ("train_loss", "val_loss")):
            ax.plot(epochs, [row[column] for row in history], color=f"C{index % 10}", label=label, marker=".")
    for ax, title in zip(axes, ("Train loss", "Validation loss")):
        ax.set(xlabel="epoch", title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss")
    _legend_below(fig, axes[0], len(histories))
    save_figure(fig, path)


def _legend_below(fig: Any, ax: Any, count: int) -> None:
    """One legend under the axes, in columns, so long choice labels never squeeze the plot."""
    handles, labels = ax.get_legend_handles_labels()
    columns = min(3, max(1, count))
    fig.tight_layout(rect=(0, 0.06 * math.ceil(count / columns) + 0.04, 1, 1))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)


def plot_scores(rows: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars: for each structure (and the mean) the best validation Dice of every choice."""
    import matplotlib.pyplot as plt
    import numpy as np

    from cmrseg.plots import save_figure

    scored = [row for row in rows if row.get("dice_mean") not in ("", None)]
    groups = [*STRUCTURES, "mean"]
    fig, ax = plt.subplots(figsize=(min(14.0, max(8.0, 1.5 + 0.3 * len(scored) * len(groups))), 4))
    width = 0.8 / max(1, len(scored))
    for index, row in enumerate(scored):
        x = np.arange(len(groups)) + (index - (len(scored) - 1) / 2) * width
        ax.bar(x, [float(row[f"dice_{g}"]) for g in groups], width, label=row["choice"], color=f"C{index % 10}")
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set(ylabel="best validation Dice", ylim=(0, 1), title="Best validation Dice per structure")
    ax.grid(axis="y", alpha=0.3)
    _legend_below(fig, ax, len(scored))
    save_figure(fig, path)


def summarize_sweep(trials: list[Trial], grid: dict[str, list[Any]], sweep_dir: Path, errors: dict[str, str]) -> list[dict[str, Any]]:
    """Rewrite ``sweep.csv`` and both comparison plots from the run folders as they are now."""
    from cmrseg import runs

    rows = [trial_row(trial, errors.get(trial.label, "")) for trial in trials]
    write_table(rows, list(grid), sweep_dir / TABLE_FILE)
    histories = {trial.label: runs.read_history(trial.run_dir) for trial in trials}
    plot_losses({label: rows for label, rows in histories.items() if rows}, sweep_dir / LOSS_PLOT)
    plot_scores(rows, sweep_dir / SCORE_PLOT)
    return rows


@dataclass
class SweepResult:
    sweep_dir: Path
    rows: list[dict[str, Any]]
    trained: int
    skipped: int
    failed: int
    ensemble_dir: Path | None = None


def run_sweep(
    config_path: str | Path,
    sets: Sequence[str],
    sweep_dir: str | Path,
    workers: int = 1,
    ray_address: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    ensemble: bool = False,
) -> SweepResult:
    """Train every choice of ``sets`` on top of the config at ``config_path`` into ``sweep_dir`` (resumable).

    With ``ensemble`` the trained runs are combined into ``sweep_dir/ensemble``, which predicts with the
    base config's TTA and post-processing."""
    from cmrseg.config import load_config
    from cmrseg.locks import run_lock
    from cmrseg.outputs import check_output_dir, write_marker

    if workers < 1:
        raise CmrsegError(f"--workers must be at least 1, got {workers}")
    if ray_address is not None:
        _import_ray()
    base = load_config(config_path)
    grid = parse_sets(sets)
    sweep_dir = Path(sweep_dir)
    trials = expand_grid(base, grid, sweep_dir)
    if ensemble and len(trials) < 2:
        raise CmrsegError("--ensemble needs at least 2 choices, e.g. --set seed=0,1")
    check_output_dir(sweep_dir, "sweep", legacy=(SWEEP_FILE,))
    states = {trial.label: trial_state(trial) for trial in trials}
    with run_lock(sweep_dir, "sweep"):
        write_marker(sweep_dir, "sweep")
        return _run_trials(config_path, base, grid, sweep_dir, trials, states, workers, ray_address, progress, log, ensemble)


def _run_trials(config_path: str | Path, base: Any, grid: dict[str, list[Any]], sweep_dir: Path, trials: list[Trial],
                states: dict[str, str], workers: int, ray_address: str | None, progress: bool,
                log: Callable[[str], None], ensemble: bool) -> SweepResult:
    """Write ``sweep.json``, train the unfinished trials, tabulate them (and their ensemble)."""
    from cmrseg.training import TrainingInterrupted
    from cmrseg.utils import write_json_atomic

    write_json_atomic(sweep_dir / SWEEP_FILE, {"base_config": str(Path(config_path).resolve()), "grid": grid,
                                               "choices": {t.label: t.run_dir.name for t in trials},
                                               "config": base.model_dump(mode="json")})
    jobs = [trial for trial in trials if states[trial.label] != "finished"]
    skipped = len(trials) - len(jobs)
    if skipped:
        log(f"skipping {skipped} finished run(s) of {len(trials)}")
    engine = (_run_ray(jobs, ray_address) if ray_address is not None
              else _run_local(jobs, min(workers, max(1, len(jobs))), progress and workers == 1))
    errors: dict[str, str] = {}
    try:
        for count, (trial, error) in enumerate(engine, start=1):
            if error:
                errors[trial.label] = error
            log(f"[{count}/{len(jobs)}] {trial.label}: {'failed: ' + error if error else 'done'}")
            summarize_sweep(trials, grid, sweep_dir, errors)
    except (KeyboardInterrupt, TrainingInterrupted):
        summarize_sweep(trials, grid, sweep_dir, errors)
        raise SweepInterrupted(f"sweep interrupted; finished epochs are kept in {sweep_dir}, rerun the same command to resume") from None
    rows = summarize_sweep(trials, grid, sweep_dir, errors)
    result = SweepResult(sweep_dir, rows, len(jobs), skipped, len(errors))
    if ensemble and not errors:
        from cmrseg.ensemble import make_ensemble

        result.ensemble_dir = make_ensemble([t.run_dir for t in trials], sweep_dir / "ensemble", tta=base.tta,
                                            tta_scales=base.tta_scales)
    return result

