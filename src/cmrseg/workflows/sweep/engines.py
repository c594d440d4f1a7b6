"""Engines that train many run folders: in this process, in local worker processes, or as Ray tasks.

Sweeps (one run per choice) and cross-validation (one run per fold) both hand their trainings here.
Each job is a key the caller knows it by, a config and a run folder; an engine yields ``(key, error)``
as jobs finish, in any order, where ``error`` is ``""`` on success and the one-line message of a
failed training otherwise. The worker processes and the Ray session come from :mod:`cmrseg.workers`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmrseg.config import ExperimentConfig
from cmrseg.errors import CmrsegError
from cmrseg.workers import check_engine, import_ray, ray_session, run_in_processes

__all__ = ["TrainJob", "check_engine", "import_ray", "run_jobs", "run_local", "run_ray", "run_trial"]


@dataclass(frozen=True)
class TrainJob:
    """One training for an engine: the caller's ``key`` for it, its config and its run folder."""

    key: Hashable
    config: ExperimentConfig
    run_dir: Path


def run_trial(config_json: dict[str, Any], run_dir: str, progress: bool = False) -> str:
    """Train (or resume) one run; returns ``""`` on success or the one-line error of a failed run.

    A failed training (e.g. a diverging learning rate) is a result for the caller, so it is reported, not raised.
    """
    from cmrseg.config import config_from_dict
    from cmrseg.training.trainer import TrainingInterrupted, continue_run

    try:
        continue_run(config_from_dict(config_json), run_dir, progress=progress)
    except TrainingInterrupted:
        raise
    except CmrsegError as err:
        return str(err)
    return ""


def run_jobs(jobs: Sequence[TrainJob], workers: int = 1, ray_address: str | None = None,
             progress: bool = False) -> Iterator[tuple[Hashable, str]]:
    """Train ``jobs`` on Ray when ``ray_address`` is given, else in up to ``workers`` local processes.

    With one worker the jobs run one after another in this process (and may show progress bars)."""
    if ray_address is not None:
        return run_ray(jobs, ray_address)
    return run_local(jobs, min(workers, max(1, len(jobs))), progress and workers == 1)


def run_local(jobs: Sequence[TrainJob], workers: int, progress: bool = False) -> Iterator[tuple[Hashable, str]]:
    """Jobs in this process (``workers`` 1) or in a pool of spawned processes, each with its share of the cores."""
    if workers <= 1:
        for job in jobs:
            yield job.key, run_trial(job.config.model_dump(mode="json"), str(job.run_dir), progress)
        return
    jobs_by_key = {job.key: (job.config.model_dump(mode="json"), str(job.run_dir)) for job in jobs}
    yield from run_in_processes(run_trial, jobs_by_key, workers)


def run_ray(jobs: Sequence[TrainJob], address: str) -> Iterator[tuple[Hashable, str]]:
    """Each job is a Ray task asking for ``threads`` CPUs (1 by default) in a :func:`cmrseg.workers.ray_session`
    (``local`` starts a throwaway cluster; the run folders must be on storage every node sees)."""
    with ray_session(address) as ray:
        pending = {}
        for job in jobs:
            task = ray.remote(num_cpus=job.config.threads or 1)(run_trial)
            pending[task.remote(job.config.model_dump(mode="json"), str(job.run_dir))] = job.key
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done[0]), ray.get(done[0])
