"""Model registry: maps a config's ``model_info.name`` to a builder, as timm's ``register_model`` does.

Each model family lives in its own module and registers itself on import. ``build_model`` wraps the
raw network in :class:`SegmentationNet`, which gives every model the same contract: 1 or
``model_info.network_channels`` input channels, any height and width, ``N x NUM_CLASSES x H x W`` logits. A builder
builds its first layer for ``info.network_channels`` (the image channels plus one plane per condition).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cmrseg.config import ModelInfo
from cmrseg.constants import NUM_CLASSES
from cmrseg.errors import CmrsegError

Builder = Callable[[ModelInfo, int], nn.Module]
"""A builder takes the model config and the number of output classes and returns the raw network, whose input has
``info.network_channels`` channels."""

OptionDefaults = Mapping[str, Any] | Callable[[ModelInfo], Mapping[str, Any]]
"""The ``options`` a family reads and their defaults, fixed or depending on the rest of ``model_info``."""

FAMILY_KEYS = ("depths", "backbone", "features", "output_stride", "deep_supervision", "dropout")
"""``model_info`` keys that only some families use; a family declares those it reads in ``accepts``."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Builder
    size_divisor: Callable[[ModelInfo], int]
    description: str
    standalone: bool = True
    accepts: frozenset[str] = frozenset()
    option_defaults: Callable[[ModelInfo], Mapping[str, Any]] = field(default=lambda _info: {})


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    size_divisor: int | Callable[[ModelInfo], int] = 32,
    description: str = "",
    standalone: bool = True,
    accepts: Iterable[str] = (),
    options: OptionDefaults | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator that registers ``builder`` under ``name``.

    ``size_divisor`` is the factor the input height and width must be a multiple of (the total
    down-sampling); :class:`SegmentationNet` pads to it so the model accepts any size.
    ``standalone=False`` marks models built from other trained runs (the ensemble), which cannot
    be built from defaults alone and are left out of :func:`available_models` unless asked for.
    ``accepts`` names the :data:`FAMILY_KEYS` the builder reads and ``options`` the ``model_info.options``
    keys with their defaults; :func:`check_model_info` rejects a config that sets anything else.
    """
    unknown = sorted(set(accepts) - set(FAMILY_KEYS))
    if unknown:
        raise ValueError(f"model '{name}' accepts unknown model_info keys {unknown}, expected some of {list(FAMILY_KEYS)}")
    if callable(options):
        defaults = options
    else:
        fixed = dict(options or {})
        defaults = lambda _info: fixed  # noqa: E731

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is already registered")
        divisor = size_divisor if callable(size_divisor) else (lambda _info, d=size_divisor: d)
        doc = description or (builder.__doc__ or "").strip()
        _REGISTRY[name] = ModelEntry(name, builder, divisor, doc, standalone, frozenset(accepts), defaults)
        return builder

    return decorator


def model_entry(name: str) -> ModelEntry:
    """Look up a registered model, with a one-line error listing the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CmrsegError(f"unknown model_info.name '{name}', expected one of {available_models(composite=True)}") from None


def check_model_info(info: ModelInfo) -> None:
    """Raise a one-line :class:`CmrsegError` for a key or option set in ``info`` that its model does not use."""
    entry = model_entry(info.name)
    for key in FAMILY_KEYS:
        value = getattr(info, key)
        if key not in entry.accepts and value != ModelInfo.model_fields[key].default:
            raise CmrsegError(f"model_info.{key}: {value!r} is not used by {info.name}")
    valid = sorted(entry.option_defaults(info))
    unknown = sorted(set(info.options) - set(valid))
    if unknown:
        raise CmrsegError(f"model_info.options: unknown option '{unknown[0]}' for {info.name}, expected one of {valid}")


def model_options(info: ModelInfo) -> dict[str, Any]:
    """``info.options`` over its family's defaults, every key present; run :func:`check_model_info` first."""
    return {**model_entry(info.name).option_defaults(info), **info.options}


def available_models(composite: bool = False) -> list[str]:
    """Registered model names; ``composite`` also lists models made of trained runs (Ensemble)."""
    return sorted(name for name, entry in _REGISTRY.items() if composite or entry.standalone)


class SegmentationNet(nn.Module):
    """Uniform wrapper: repeats gray input to ``input_channels``, pads to ``size_divisor``, crops back.

    With ``input_scale`` s > 1 the network sees the image bilinearly up-sampled s times and its logits
    are average-pooled back to the input size: small structures (a thin RV crescent, an end-systolic
    LV of 40 pixels) then span more pixels at every level of the network, at about s**2 the cost.

    In training mode a deep-supervision network may return several outputs; they come back as a list
    with the full-resolution output first. In eval mode only the main output is returned.
    """

    def __init__(self, net: nn.Module, input_channels: int, size_divisor: int, name: str, input_scale: int = 1) -> None:
        super().__init__()
        self.net = net
        self.input_channels = input_channels
        self.size_divisor = size_divisor
        self.model_name = name
        self.input_scale = input_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.shape[1] == 1 and self.input_channels > 1:
            x = x.expand(-1, self.input_channels, -1, -1)
        elif x.shape[1] != self.input_channels:
            raise ValueError(f"{self.model_name} expects 1 or {self.input_channels} input channels, got {x.shape[1]}")
        if self.input_scale > 1:
            x = F.interpolate(x, scale_factor=self.input_scale, mode="bilinear", align_corners=False)
        height, width = x.shape[-2:]
        pad_h = (-height) % self.size_divisor
        pad_w = (-width) % self.size_divisor
        if pad_h or pad_w or torch.compiler.is_exporting():
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), mode=mode)
        out = self.net(x)
        outputs = list(out) if isinstance(out, (list, tuple)) else [out]
        outputs = [o[..., pad_h // 2 : pad_h // 2 + height, pad_w // 2 : pad_w // 2 + width] for o in outputs]
        if self.input_scale > 1:
            outputs = [F.avg_pool2d(o, self.input_scale) for o in outputs]
        return outputs if (self.training and len(outputs) > 1) else outputs[0]


def build_model(info: ModelInfo, num_classes: int = NUM_CLASSES) -> SegmentationNet:
    """Build the network named in ``info`` and load ``info.pretrained`` weights when given."""
    entry = model_entry(info.name)
    check_model_info(info)
    try:
        net = entry.builder(info, num_classes)
    except (ValueError, TypeError) as err:
        raise CmrsegError(f"cannot build model '{info.name}': {err}") from None
    model = wrap_network(info, net)
    if info.pretrained:
        from cmrseg.models.pretrained import load_pretrained

        load_pretrained(model, info.pretrained)
    return model


def wrap_network(info: ModelInfo, net: nn.Module) -> SegmentationNet:
    """``net``, the family network of ``info``, inside the :class:`SegmentationNet` that every cmrseg model is
    (what :func:`build_model` returns and checkpoints hold)."""
    return SegmentationNet(net, info.network_channels, model_entry(info.name).size_divisor(info), info.name,
                           info.input_scale)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
