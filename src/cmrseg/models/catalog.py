"""A table of the registered models at their default configuration: size and CPU forward time.

It also lists what a config may set for each model (its ``model_info`` keys and ``options``) and the
encoders DeepLab_v3 accepts as ``backbone``, all read from the model and encoder registries.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from typing import Any

import torch

from cmrseg.config import ModelInfo
from cmrseg.models.encoders import available_encoders, encoder_entry
from cmrseg.models.registry import ModelEntry, available_models, build_model, count_parameters, model_entry


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


COMPOSITE_NOTE = "built by `cmrseg ensemble` from trained runs, not from a config alone (no forward timing)"


def catalog_variants() -> list[ModelInfo]:
    """Every registered model at its defaults, DeepLab_v3 once per encoder; composite ones (Ensemble) last."""
    variants = []
    for name in available_models():
        backbones = available_encoders() if name == "DeepLab_v3" else (None,)
        variants.extend(ModelInfo(name=name, backbone=backbone) for backbone in backbones)
    variants.extend(ModelInfo(name=name) for name in sorted(set(available_models(composite=True)) - set(available_models())))
    return variants


def variant_label(info: ModelInfo) -> str:
    return f"{info.name}/{info.backbone}" if info.backbone else info.name


def _table_line(row: dict[str, Any]) -> str:
    parameters = "-" if row["parameters"] is None else f"{row['parameters']:,}"
    forward = "-" if row["forward_ms"] is None else f"{row['forward_ms']:.1f}"
    return f"{row['name']:<22}{parameters:>14}{forward:>12}  {row['description'].split(';')[0]}"


def accepted_settings(entry: ModelEntry) -> str:
    """What a config may set for ``entry`` beyond the common keys: its ``model_info`` keys and options."""
    keys = ", ".join(sorted(entry.accepts)) or "no family keys"
    defaults = entry.option_defaults(ModelInfo(name=entry.name))
    options = ", ".join(f"{key}={value!r}" for key, value in sorted(defaults.items()))
    return f"{keys}; options: {options or 'none'}"


def format_model_table(rows: list[dict[str, Any]]) -> str:
    """Aligned text table of :func:`model_table` rows, then each model's accepted settings and the encoders."""
    lines = [f"{'model':<22}{'parameters':>14}{'forward ms':>12}  description"]
    lines += [_table_line(row) for row in rows]
    lines.append(f"(forward: batch 1, 1x96x96, CPU, {torch.get_num_threads()} threads, median of repeats)")
    lines.append("\nmodel_info keys and options each model accepts (anything else is a config error):")
    lines += [f"  {name:<20}{accepted_settings(model_entry(name))}" for name in available_models(composite=True)]
    lines.append("\nencoders (model_info.backbone of DeepLab_v3, default drn):")
    for name in available_encoders():
        encoder = encoder_entry(name)
        strides = " or ".join(map(str, encoder.output_strides))
        options = ", ".join(f"{key}={value!r}" for key, value in encoder.options.items()) or "none"
        lines.append(f"  {name:<20}{encoder.description}; output_stride {strides}; options: {options}")
    return "\n".join(lines)


def model_table(names: Iterable[str] | None = None, size: int = 96, repeats: int = 3) -> list[dict[str, Any]]:
    """One row per model (all registered ones by default): name, description, parameters, forward_ms.

    Each model is built from ``ModelInfo(name=name)`` and timed on the CPU with batch 1 and a one-channel
    ``size`` x ``size`` input; the number of torch threads is left as it is. A composite model (Ensemble)
    gets a row without parameters and timing. An unknown name raises :class:`~cmrseg.errors.CmrsegError`.
    """
    rows = []
    infos = catalog_variants() if names is None else [ModelInfo(name=name) for name in names]
    for info in infos:
        entry = model_entry(info.name)
        if not entry.standalone:
            rows.append({"name": info.name, "description": COMPOSITE_NOTE, "parameters": None, "forward_ms": None})
            continue
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
