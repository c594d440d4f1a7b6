"""Where parallel jobs run: in this process, in spawned local worker processes, or on a Ray cluster.

The pieces every engine shares: checking ``--workers``/``--ray-address`` before anything is written, the cores each
local worker takes (torch threads split between workers, so two workers on two cores do not oversubscribe them),
workers that die with their parent, and a Ray session with cmrseg's conventions (``local`` starts a throwaway
cluster on loopback, no usage statistics). Training many runs (:mod:`cmrseg.workflows.sweep.engines`, used by ``cv`` and
``sweep``) and predicting a cohort of volumes (:mod:`cmrseg.inference.cohort`) both build on them. Ray is imported
only when asked for, so it stays an optional extra.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

from cmrseg.errors import CmrsegError

RAY_HINT = "--ray-address needs Ray: pip install 'cmrseg[distributed]'"
PARENT_POLL_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1


def check_engine(workers: int, ray_address: str | None) -> None:
    """Validate the engine arguments before anything is written: ``workers`` >= 1, Ray importable if asked for."""
    if workers < 1:
        raise CmrsegError(f"workers must be at least 1, got {workers}", key="workers")
    if ray_address is not None:
        import_ray()


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise CmrsegError(RAY_HINT) from None
    return ray


def thread_share(workers: int) -> int:
    """Torch threads of each of ``workers`` local processes: the machine's cores split between them (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _init_worker(threads: int, parent: int, setup: Callable[..., None] | None, setup_args: Sequence[Any]) -> None:
    """Worker initialiser: end with the parent process ``parent`` (:func:`end_with_parent`), take a share of the
    cores instead of all of them, then run the caller's ``setup`` once (e.g. load a model)."""
    import torch

    end_with_parent(parent)
    torch.set_num_threads(threads)
    if setup is not None:
        setup(*setup_args)


def end_with_parent(parent: int) -> None:
    """Kill this process (SIGKILL, as ``kill -9`` would) when ``parent`` dies, so the workers of a killed command
    stop instead of running on and holding their folders' locks: on Linux the kernel's parent-death signal
    (``prctl(PR_SET_PDEATHSIG)``), everywhere a daemon thread that polls ``os.getppid()`` every
    :data:`PARENT_POLL_SECONDS`. A killed worker's lock is released by the kernel and its temporaries are
    cleaned at the next start, as after any ``kill -9``."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    threading.Thread(target=_watch_parent, args=(parent,), name="cmrseg-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)


def run_in_processes(call: Callable[..., Any], jobs: Mapping[Hashable, Sequence[Any]], workers: int,
                     setup: Callable[..., None] | None = None,
                     setup_args: Sequence[Any] = ()) -> Iterator[tuple[Hashable, Any]]:
    """``call(*args)`` of every job (``key -> args``) in a pool of ``workers`` spawned processes, each with its
    :func:`thread_share` of the cores and set up once by ``setup(*setup_args)``; yields ``(key, result)`` as jobs
    finish, in any order. ``call``, ``setup`` and the arguments must pickle (module-level functions).

    On an error or Ctrl-C the jobs not started are cancelled and the running ones finish before it is raised."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                             initargs=(thread_share(workers), os.getpid(), setup, tuple(setup_args))) as pool:
        futures = {pool.submit(call, *args): key for key, args in jobs.items()}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


@contextlib.contextmanager
def ray_session(address: str) -> Iterator[Any]:
    """Connect to the Ray cluster at ``address`` (``local``: start a throwaway one on this machine) and yield the
    ``ray`` module; disconnect at the end.

    The outputs and the data paths must be on storage every node sees (shared filesystem). No usage statistics
    are sent (``RAY_USAGE_STATS_ENABLED=0`` unless set), and a local cluster listens on loopback only."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = import_ray()
    local = address == "local"
    loopback = {"include_dashboard": False, "_node_ip_address": "127.0.0.1"} if local else {}
    ray.init(address=None if local else address, log_to_driver=False, **loopback)
    try:
        yield ray
    finally:
        ray.shutdown()


class _RayWorker:
    """A Ray actor set up once (``setup(*setup_args)``, e.g. a model loaded) that then runs jobs one by one."""

    def __init__(self, threads: int, setup: Callable[..., None] | None, setup_args: Sequence[Any]) -> None:
        import torch

        torch.set_num_threads(threads)
        if setup is not None:
            setup(*setup_args)

    def run(self, key: Hashable, call: Callable[..., Any], args: Sequence[Any]) -> tuple[Hashable, Any]:
        return key, call(*args)


def run_on_ray_actors(call: Callable[..., Any], jobs: Mapping[Hashable, Sequence[Any]], address: str, workers: int,
                      setup: Callable[..., None] | None = None, setup_args: Sequence[Any] = (),
                      cpus: int = 1) -> Iterator[tuple[Hashable, Any]]:
    """:func:`run_in_processes` on the Ray cluster at ``address``: ``workers`` actors of ``cpus`` CPUs (and as many
    torch threads) each, each set up once, take the jobs as they become free; yields ``(key, result)`` as jobs
    finish."""
    with ray_session(address) as ray:
        from ray.util import ActorPool

        actor = ray.remote(num_cpus=cpus)(_RayWorker)
        pool = ActorPool([actor.remote(cpus, setup, tuple(setup_args)) for _ in range(max(1, min(workers, len(jobs))))])
        yield from pool.map_unordered(lambda worker, item: worker.run.remote(item[0], call, item[1]), list(jobs.items()))
