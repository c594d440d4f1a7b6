"""Engines that train many run folders: in this process, in local worker processes, or as Ray tasks.

Sweeps (one run per choice) and cross-validation (one run per fold) both hand their trainings here.
Each job is a key the caller knows it by, a config and a run folder; an engine yields ``(key, error)``
as jobs finish, in any order, where ``error`` is ``""`` on success and the one-line message of a
failed training otherwise. Ray is imported only when asked for, so it stays an optional extra.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmrseg.config import ExperimentConfig
from cmrseg.errors import CmrsegError

RAY_HINT = "--ray-address needs Ray: pip install 'cmrseg[distributed]'"


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


def check_engine(workers: int, ray_address: str | None) -> None:
    """Validate the engine arguments before anything is written: ``workers`` >= 1, Ray importable if asked for."""
    if workers < 1:
        raise CmrsegError(f"--workers must be at least 1, got {workers}")
    if ray_address is not None:
        import_ray()


def run_jobs(jobs: Sequence[TrainJob], workers: int = 1, ray_address: str | None = None,
             progress: bool = False) -> Iterator[tuple[Hashable, str]]:
    """Train ``jobs`` on Ray when ``ray_address`` is given, else in up to ``workers`` local processes.

    With one worker the jobs run one after another in this process (and may show progress bars)."""
    if ray_address is not None:
        return run_ray(jobs, ray_address)
    return run_local(jobs, min(workers, max(1, len(jobs))), progress and workers == 1)


PARENT_POLL_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1


def _init_worker(threads: int, parent: int) -> None:
    """Worker initialiser: end with the parent process ``parent`` (:func:`end_with_parent`) and take a share of
    the cores instead of all of them."""
    import torch

    end_with_parent(parent)
    torch.set_num_threads(threads)


def end_with_parent(parent: int) -> None:
    """Kill this process (SIGKILL, as ``kill -9`` would) when ``parent`` dies, so the workers of a killed cv or
    sweep stop training instead of running on and holding their run folders' locks: on Linux the kernel's
    parent-death signal (``prctl(PR_SET_PDEATHSIG)``), everywhere a daemon thread that polls ``os.getppid()``
    every :data:`PARENT_POLL_SECONDS`. A killed worker's lock is released by the kernel and its temporaries are
    cleaned at the next start, as after any ``kill -9``."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    threading.Thread(target=_watch_parent, args=(parent,), name="cmrseg-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)


def run_local(jobs: Sequence[TrainJob], workers: int, progress: bool = False) -> Iterator[tuple[Hashable, str]]:
    """Jobs in this process (``workers`` 1) or in a pool of spawned processes, each with its share of the cores."""
    if workers <= 1:
        for job in jobs:
            yield job.key, run_trial(job.config.model_dump(mode="json"), str(job.run_dir), progress)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads, os.getpid())) as pool:
        futures = {pool.submit(run_trial, job.config.model_dump(mode="json"), str(job.run_dir)): job.key for job in jobs}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise CmrsegError(RAY_HINT) from None
    return ray


def run_ray(jobs: Sequence[TrainJob], address: str) -> Iterator[tuple[Hashable, str]]:
    """Each job is a Ray task asking for ``threads`` CPUs (1 by default); ``local`` starts a throwaway cluster.

    The run folders and the data paths must be on storage every node sees (shared filesystem). No usage
    statistics are sent (``RAY_USAGE_STATS_ENABLED=0`` unless set), and a local cluster listens on loopback only.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = import_ray()
    local = address == "local"
    loopback = {"include_dashboard": False, "_node_ip_address": "127.0.0.1"} if local else {}
    ray.init(address=None if local else address, log_to_driver=False, **loopback)
    try:
        pending = {}
        for job in jobs:
            task = ray.remote(num_cpus=job.config.threads or 1)(run_trial)
            pending[task.remote(job.config.model_dump(mode="json"), str(job.run_dir))] = job.key
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done[0]), ray.get(done[0])
    finally:
        ray.shutdown()
