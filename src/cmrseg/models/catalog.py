"""A table of the registered models at their default configuration: size and CPU forward time."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from typing import Any

import torch

from cmrseg.config import ModelInfo
from cmrseg.models.registry import available_models, build_model, count_parameters, model_entry


def forward_ms(model: torch.nn.Module, size: int = 96, repeats: int = 3) -> float:
    """Median wall time in ms of ``repeats`` eval forwards of a 1 x 1 x size x size input, after one warm-up."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    x = torch.zeros(1, 1, size, size)
    model.eval()
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def model_table(names: Iterable[str] | None = None, size: int = 96, repeats: int = 3) -> list[dict[str, Any]]:
    """One row per model (all registered ones by default): name, description, parameters, forward_ms.

    Each model is built from ``ModelInfo(name=name)`` and timed on the CPU with batch 1 and a one-channel
    ``size`` x ``size`` input; the number of torch threads is left as it is. An unknown name raises
    :class:`~cmrseg.errors.CmrsegError`.
    """
    rows = []
    for name in available_models() if names is None else list(names):
        entry = model_entry(name)
        model = build_model(ModelInfo(name=name))
        rows.append(
            {
                "name": name,
                "description": entry.description,
                "parameters": count_parameters(model),
                "forward_ms": round(forward_ms(model, size, repeats), 1),
            }
        )
    return rows
