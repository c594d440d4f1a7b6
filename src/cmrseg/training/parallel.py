"""Data-parallel training on CPU cores: one training split over ``processes`` local processes.

Why: torch's threads share the convolutions of one small 2D network, but one process still loads and augments
every batch alone; two processes that each take half the batch and average their gradients (torch's
``DistributedDataParallel`` over gloo) train ``configs/acdc_native.json`` 1.72x faster than one thread and 1.14x
faster than two threads on 2 cores (BENCHMARKS.md "One run on every core"). Each process builds the
same :class:`~cmrseg.training.trainer.Trainer`; :class:`ProcessShare` tells it which part of each batch is its
own, and only the first process writes the run folder. The batch, the schedule and the steps an epoch are those
of the single-process run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from cmrseg.errors import CmrsegError
from cmrseg.utils import quiet_logger
from cmrseg.workers import end_with_parent, thread_share

Result = TypeVar("Result")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS says, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class ProcessShare:
    """This process's part of a training: ``rank`` among ``world`` processes (world 1: the whole training)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes the run folder and shows progress."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to train: ``model`` itself, or wrapped so that a backward pass averages the processes' gradients."""
        return nn.parallel.DistributedDataParallel(model) if self.parallel else model

    def shard(self, order: list[int]) -> list[int]:
        """This process's items of an epoch's ``order``: every ``world``-th, the order first padded by its own start so
        that every process takes the same number of batches (an uneven count would leave one waiting)."""
        if not self.parallel:
            return order
        padded = order + order[: (-len(order)) % self.world]
        return padded[self.rank :: self.world]

    def batch_size(self, batch_size: int) -> int:
        """Each process's part of the run's ``batch_size`` (a multiple of ``world``, see :func:`training_processes`)."""
        return batch_size // self.world

    def total(self, *values: float) -> tuple[float, ...]:
        """``values`` summed over the processes (as they are in a single process)."""
        if not self.parallel:
            return values
        summed = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(summed)
        return tuple(float(v) for v in summed)

    def from_main(self, value: Result) -> Result:
        """The main process's ``value`` in every process (validation runs there alone; the schedule needs it all over)."""
        if not self.parallel:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


SINGLE = ProcessShare()


def training_processes(processes: int, batch_size: int, device: torch.device) -> int:
    """The processes a training runs in: ``processes`` on the CPU; one on a GPU (which one process keeps busy).

    Refuses a count above the cores here or one that does not divide the batch, in one line naming ``processes``.
    """
    if processes <= 1:
        return 1
    if device.type != "cpu":
        warnings.warn(f"processes {processes} is for CPU training; training on {device} in one process", stacklevel=2)
        return 1
    cores = available_cores()
    if processes > cores:
        raise CmrsegError(f"processes {processes} is more than the {cores} CPU cores here; use at most {cores}",
                          key="processes")
    if batch_size % processes:
        raise CmrsegError(f"processes {processes} does not divide batch_size {batch_size}: each process takes an equal "
                          "part of every batch", key="processes")
    return processes


def train_in_processes(start: Callable[[ProcessShare], Result], processes: int, threads: int | None = None) -> Result:
    """Run ``start(share)`` in ``processes`` local processes joined as one training; return the main process's result.

    ``start`` must be picklable (a module-level function or a ``functools.partial`` of one). A
    :class:`~cmrseg.errors.CmrsegError` in any process is raised here with its message; the others are stopped.
    """
    context = multiprocessing.get_context("spawn")
    messages = context.SimpleQueue()
    threads = threads or thread_share(processes)
    # torch's 'Terminating process ... via signal' warning is silenced: when one process fails, the error line says why
    with tempfile.TemporaryDirectory(prefix="cmrseg-processes-") as folder, quiet_logger("torch.multiprocessing.spawn"):
        store = Path(folder) / "store"
        workers = torch.multiprocessing.start_processes(
            _process_main, args=(processes, str(store), threads, os.getpid(), start, messages),
            nprocs=processes, join=False, start_method="spawn")
        received: list[tuple[str, Any]] = []
        try:
            while not workers.join(timeout=0.5):
                _drain(messages, received)
        except KeyboardInterrupt:
            _interrupt(workers)
            _drain(messages, received)
            _raise_error(received)
            raise
        except Exception:
            _drain(messages, received)
            _raise_error(received)
            raise
        _drain(messages, received)
    results = [value for kind, value in received if kind == "result"]
    if not results:
        raise RuntimeError("the main training process ended without a result")
    return results[0]


def _interrupt(workers: Any) -> None:
    """Ctrl-C: a terminal sends it to every process, ``kill -INT`` to this one alone, so pass it on to any process
    still running after a moment; each then stops as a single-process training does (saying how far it got)."""
    processes = workers.processes
    for process in processes:
        process.join(timeout=3)
    for process in processes:
        if process.is_alive():
            os.kill(process.pid, signal.SIGINT)
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.terminate()


def _drain(messages: Any, received: list[tuple[str, Any]]) -> None:
    while not messages.empty():
        received.append(messages.get())


def _raise_error(received: list[tuple[str, Any]]) -> None:
    """Raise the first user error a process reported (the class it had, message and key)."""
    for kind, value in received:
        if kind == "error":
            error_class, message, key = value
            raise error_class(message, key=key)


def _process_main(rank: int, world: int, store: str, threads: int, parent: int,
                  start: Callable[[ProcessShare], Any], messages: Any) -> None:
    """One process of the training: join the group, run its share, report the result (main) or a user error."""
    end_with_parent(parent)
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        result = start(ProcessShare(rank, world))
        if rank == 0:
            messages.put(("result", result))
    except CmrsegError as error:
        messages.put(("error", (type(error), str(error), error.key)))
        raise SystemExit(1) from None
    finally:
        dist.destroy_process_group()
