"""Running a sweep: check the grid and the folder, train the unfinished choices on an engine, tabulate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmrseg import runs
from cmrseg.config import ExperimentConfig
from cmrseg.errors import CmrsegError
from cmrseg.workflows.sweep.engines import TrainJob, check_engine, run_jobs
from cmrseg.workflows.sweep.grid import Trial, expand_grid
from cmrseg.workflows.sweep.table import summarize_sweep

SWEEP_FILE = "sweep.json"


class SweepInterrupted(CmrsegError):
    """Ctrl-C during a sweep; finished epochs are kept and the same command resumes."""


@dataclass
class SweepResult:
    sweep_dir: Path
    rows: list[dict[str, Any]]
    trained: int
    skipped: int
    failed: int
    ensemble_dir: Path | None = None


def trial_state(trial: Trial) -> str:
    """``new``, ``partial`` (has a ``last.pt`` short of the epochs) or ``finished``.

    A run folder trained from another config is a user mistake (a reused --out), not something to resume;
    more ``epochs`` extend a run (see :func:`cmrseg.runs.same_training`).
    """
    state = runs.run_state(trial.run_dir, trial.config.epochs)
    if state != "new" and not runs.same_training(runs.read_run_config(trial.run_dir), trial.config, extend_epochs=True):
        raise CmrsegError(f"{trial.run_dir}: holds a run of another config; choose another sweep folder", key="out_dir")
    return state


def run_sweep(
    config: ExperimentConfig,
    grid: dict[str, list[Any]],
    sweep_dir: str | Path,
    workers: int = 1,
    ray_address: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    ensemble: bool = False,
    source: str | Path | None = None,
) -> SweepResult:
    """Train every choice of ``grid`` (from :func:`~cmrseg.workflows.sweep.grid.parse_sets`) on top of ``config`` into
    ``sweep_dir`` (resumable); ``source`` is the config file, recorded in ``sweep.json`` for the report.

    With ``ensemble`` the trained runs are combined into ``sweep_dir/ensemble``, which predicts with the
    base config's TTA and post-processing."""
    from cmrseg.io.locks import run_lock
    from cmrseg.io.outputs import check_output_dir, write_marker

    check_engine(workers, ray_address)
    sweep_dir = Path(sweep_dir)
    trials = expand_grid(config, grid, sweep_dir)
    if ensemble and len(trials) < 2:
        raise CmrsegError("ensemble needs at least 2 choices, e.g. seed=0,1", key="ensemble")
    check_output_dir(sweep_dir, "sweep", legacy=(SWEEP_FILE,))
    states = {trial.label: trial_state(trial) for trial in trials}
    with run_lock(sweep_dir, "sweep"):
        write_marker(sweep_dir, "sweep")
        _write_spec(sweep_dir, config, grid, trials, source)
        return _run_trials(config, grid, sweep_dir, trials, states, workers, ray_address, progress, log, ensemble)


def _write_spec(sweep_dir: Path, config: ExperimentConfig, grid: dict[str, list[Any]], trials: list[Trial],
                source: str | Path | None) -> None:
    """``sweep.json``: the base config (and its file), the grid and each choice's folder."""
    from cmrseg.io.atomic import write_json_atomic

    base_config = str(Path(source).resolve()) if source is not None else "(config given as an object)"
    write_json_atomic(sweep_dir / SWEEP_FILE, {"base_config": base_config, "grid": grid,
                                               "choices": {t.label: t.run_dir.name for t in trials},
                                               "config": config.model_dump(mode="json")})


def _run_trials(base: ExperimentConfig, grid: dict[str, list[Any]], sweep_dir: Path, trials: list[Trial],
                states: dict[str, str], workers: int, ray_address: str | None, progress: bool,
                log: Callable[[str], None], ensemble: bool) -> SweepResult:
    """Train the unfinished trials, tabulate them after each (and their ensemble at the end)."""
    from cmrseg.training.trainer import TrainingInterrupted

    jobs = [TrainJob(trial.label, trial.config, trial.run_dir) for trial in trials if states[trial.label] != "finished"]
    skipped = len(trials) - len(jobs)
    if skipped:
        log(f"skipping {skipped} finished run(s) of {len(trials)}")
    errors: dict[str, str] = {}
    try:
        for count, (label, error) in enumerate(run_jobs(jobs, workers, ray_address, progress), start=1):
            if error:
                errors[str(label)] = error
            log(f"[{count}/{len(jobs)}] {label}: {'failed: ' + error if error else 'done'}")
            summarize_sweep(trials, grid, sweep_dir, errors)
    except (KeyboardInterrupt, TrainingInterrupted):
        summarize_sweep(trials, grid, sweep_dir, errors)
        raise SweepInterrupted(f"sweep interrupted; finished epochs are kept in {sweep_dir}, rerun the same command to resume") from None
    rows = summarize_sweep(trials, grid, sweep_dir, errors)
    result = SweepResult(sweep_dir, rows, len(jobs), skipped, len(errors))
    if ensemble and not errors:
        from cmrseg.workflows.ensemble import make_ensemble

        result.ensemble_dir = make_ensemble([t.run_dir for t in trials], sweep_dir / "ensemble", tta=base.tta,
                                            tta_scales=base.tta_scales)
    return result
