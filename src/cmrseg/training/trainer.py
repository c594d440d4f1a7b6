"""Training a run folder: fresh, resumed, paused after an epoch, or split over processes; the epochs themselves
are :class:`~cmrseg.training.loop.Trainer`'s, which writes the run folder (see :mod:`cmrseg.runs`)."""

from __future__ import annotations

import copy
import functools
import time
from pathlib import Path
from typing import Any

from cmrseg import runs
from cmrseg.config import ExperimentConfig
from cmrseg.errors import CmrsegError
from cmrseg.io.locks import run_lock
from cmrseg.io.outputs import check_output_dir, check_output_file, write_marker
from cmrseg.training.loop import NO_VALIDATION, Trainer, TrainingInterrupted, TrainResult, resample_bundle
from cmrseg.training.parallel import ProcessShare, train_in_processes, training_processes
from cmrseg.utils import resolve_device

__all__ = ["NO_VALIDATION", "Trainer", "TrainingInterrupted", "TrainResult", "resample_bundle", "train",
           "continue_run", "clone_config", "default_run_dir"]


def default_run_dir(config: ExperimentConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.model_info.name}-{stamp}"


def train(
    config: ExperimentConfig | None,
    run_dir: str | Path | None = None,
    epochs: int | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    processes: int | None = None,
) -> TrainResult:
    """Train from ``config`` into ``run_dir``; with ``resume`` continue that folder's ``last.pt``.

    On resume the folder's saved config is used (``config`` may be None; when given it must train the same,
    see :func:`cmrseg.runs.same_training`); ``epochs`` may extend it. ``stop_after`` pauses the run after that
    epoch without changing its schedule (training in sessions; early checkpoints of the very run). ``processes``
    overrides the config's (:mod:`cmrseg.training.parallel`), on a resume too.
    """
    if epochs is not None and epochs < 1:
        raise CmrsegError(f"epochs must be at least 1, got {epochs}", key="epochs")
    if stop_after is not None and stop_after < 1:
        raise CmrsegError(f"stop-after must be at least 1, got {stop_after}", key="stop_after")
    if processes is not None and processes < 1:
        raise CmrsegError(f"processes must be at least 1, got {processes}", key="processes")
    if resume:
        if run_dir is None:
            raise CmrsegError("resume needs the run folder to continue", key="run_dir")
        run_dir = Path(run_dir)
        last = run_dir / runs.LAST_CHECKPOINT
        if not last.is_file():
            raise CmrsegError(f"{run_dir}: nothing to resume (no {runs.LAST_CHECKPOINT})")
        saved = runs.read_run_config(run_dir)
        if config is not None and not runs.same_training(saved, config, extend_epochs=True):
            raise CmrsegError(f"{run_dir}: holds a run of another config (its training part differs); resume it with its own "
                              "config or choose another run folder", key="run_dir")
        config = saved
        done = runs.epochs_done(run_dir)
        if epochs is not None and epochs < done:
            raise CmrsegError(f"{run_dir}: epochs {epochs} is below the {done} epochs already done; ask for {done} or "
                              "more", key="epochs")
        if stop_after is not None and stop_after <= done:
            raise CmrsegError(f"{run_dir}: stop-after {stop_after} is not past the {done} epochs already done",
                              key="stop_after")
    elif config is None:
        raise CmrsegError("training needs a config (or resuming, the run folder to continue)", key="config")
    if epochs is not None:
        config = config.model_copy(update={"epochs": epochs})
    if processes is not None:
        config = config.model_copy(update={"processes": processes})
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    check_output_dir(run_dir, "train", legacy=(runs.CONFIG_FILE,))
    if config.model_info.model_path:
        check_output_file(config.model_info.model_path, inputs=[run_dir / name for name in runs.RUN_FILES])
    count = training_processes(config.processes, config.batch_size, resolve_device(config.device))
    if count > 1:
        created = not run_dir.exists()
        try:
            with run_lock(run_dir, "train"):
                _refuse_finished(run_dir, resume)
                return train_in_processes(functools.partial(_train_share, config, run_dir, resume, stop_after, progress),
                                          count, config.threads)
        except CmrsegError:
            if created and run_dir.is_dir() and not any(run_dir.iterdir()):
                run_dir.rmdir()  # the lock's folder, left empty by an error in the data: as if never asked
            raise
    trainer = Trainer(config, run_dir, progress=progress)
    with run_lock(run_dir, "train"):
        _refuse_finished(run_dir, resume)
        return _fit(trainer, resume, stop_after)


def _refuse_finished(run_dir: Path, resume: bool) -> None:
    if not resume and (run_dir / runs.LAST_CHECKPOINT).exists():
        raise CmrsegError(f"{run_dir}: already holds a run; resume it or choose another run folder", key="resume")


def _fit(trainer: Trainer, resume: bool, stop_after: int | None) -> TrainResult:
    """Restore (``resume``), write the run's description (main process) and run the epochs."""
    if resume:
        trainer.restore(runs.load_checkpoint(trainer.run_dir / runs.LAST_CHECKPOINT))
    if trainer.share.main:
        write_marker(trainer.run_dir, "train")
        runs.write_run_config(trainer.run_dir, trainer.config)
        runs.write_training_data(trainer.run_dir, trainer.data_description)
        runs.write_input_spec(trainer.run_dir, trainer.spec)
    return trainer.fit(stop_after)


def _train_share(config: ExperimentConfig, run_dir: Path, resume: bool, stop_after: int | None, progress: bool,
                 share: ProcessShare) -> TrainResult:
    """One process's part of a training split over processes (run by :func:`train_in_processes`)."""
    return _fit(Trainer(config, run_dir, progress=progress, share=share), resume, stop_after)


def continue_run(config: ExperimentConfig, run_dir: str | Path, progress: bool = True) -> None:
    """Bring ``run_dir`` to ``config.epochs``: train it fresh, resume its ``last.pt``, or leave a finished run alone.

    Used by everything that re-runs many trainings (cv folds, sweep trials, benchmarks) so that running
    the same command again continues where it stopped.
    """
    run_dir = Path(run_dir)
    state = runs.run_state(run_dir, config.epochs)
    if state == "new":
        train(config, run_dir, progress=progress)
    elif state == "partial":
        train(None, run_dir, epochs=config.epochs, resume=True, progress=progress)


def clone_config(config: ExperimentConfig, **updates: Any) -> ExperimentConfig:
    """A deep copy of ``config`` with top-level ``updates`` applied (used by CV and sweeps)."""
    return copy.deepcopy(config).model_copy(update=updates)
