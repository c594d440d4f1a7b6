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


DEEPLAB_BACKBONES = ("drn", "resnet", "mobilenet", "xception")


def catalog_variants() -> list[ModelInfo]:
    """Every standalone registered model at its defaults, DeepLab_v3 once per backbone."""
    variants = []
    for name in available_models():
        backbones = DEEPLAB_BACKBONES if name == "DeepLab_v3" else (None,)
        variants.extend(ModelInfo(name=name, backbone=backbone) for backbone in backbones)
    return variants


def variant_label(info: ModelInfo) -> str:
    return f"{info.name}/{info.backbone}" if info.backbone else info.name


def format_model_table(rows: list[dict[str, Any]]) -> str:
    """Aligned text table of :func:`model_table` rows."""
    lines = [f"{'model':<22}{'parameters':>14}{'forward ms':>12}  description"]
    lines += [f"{row['name']:<22}{row['parameters']:>14,}{row['forward_ms']:>12.1f}  {row['description'].split(';')[0]}" for row in rows]
    lines.append(f"(forward: batch 1, 1x96x96, CPU, {torch.get_num_threads()} threads, median of repeats)")
    return "\n".join(lines)


def model_table(names: Iterable[str] | None = None, size: int = 96, repeats: int = 3) -> list[dict[str, Any]]:
    """One row per model (all registered ones by default): name, description, parameters, forward_ms.

    Each model is built from ``ModelInfo(name=name)`` and timed on the CPU with batch 1 and a one-channel
    ``size`` x ``size`` input; the number of torch threads is left as it is. An unknown name raises
    :class:`~cmrseg.errors.CmrsegError`.
    """
    rows = []
    infos = catalog_variants() if names is None else [ModelInfo(name=name) for name in names]
    for info in infos:
        entry = model_entry(info.name)
        model = build_model(info)
        rows.append(
            {
                "name": variant_label(info),
                "description": entry.description,
                "parameters": count_parameters(model),
                "forward_ms": round(forward_ms(model, size, repeats), 1),
            }
        )
    return rows
