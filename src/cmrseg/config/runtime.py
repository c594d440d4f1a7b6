"""The runtime part of a config: where and how a training runs (device, threads, data workers, memory layout,
checkpoint period); it changes neither what is trained nor how it predicts, so a resume may change it."""

from __future__ import annotations

from pydantic import Field

from cmrseg.config.base import Strict


class RuntimeConfig(Strict):
    """Where and how a training runs: device, threads, processes, data-loading workers, memory layout, checkpoint
    period."""

    checkpoint_every: int = Field(10, ge=1)
    num_workers: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)
    processes: int = Field(1, ge=1)
    """Local processes one CPU training is split over, each taking a part of every batch (on 2 cores 1.72x one thread, 1.14x two threads)."""
    channels_last: bool = False
    device: str = "auto"
