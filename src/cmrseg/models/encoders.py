"""Encoder registry: the feature extractors DeepLab builds on, keyed by ``model_info.backbone``.

Each backbone module registers a factory with :func:`register_encoder`; the factory takes the input
channels, the output stride, the width multiplier and the encoder's options and returns a module whose
forward gives ``(high, low)`` feature maps (low at stride 4) and which has ``out_channels``,
``low_level_channels`` and ``output_stride``. DeepLab and ``cmrseg models`` both read this registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from cmrseg.errors import CmrsegError

EncoderFactory = Callable[[int, int, float, Mapping[str, Any]], nn.Module]
"""``(input_channels, output_stride, width_multiplier, options) -> encoder``."""


@dataclass(frozen=True)
class EncoderEntry:
    name: str
    factory: EncoderFactory
    description: str
    output_strides: tuple[int, ...]
    options: Mapping[str, Any]


_ENCODERS: dict[str, EncoderEntry] = {}


def register_encoder(
    name: str, *, description: str, output_strides: tuple[int, ...] = (8, 16), options: Mapping[str, Any] | None = None
) -> Callable[[EncoderFactory], EncoderFactory]:
    """Decorator that registers an encoder factory under ``name`` with its ``options`` and their defaults."""

    def decorator(factory: EncoderFactory) -> EncoderFactory:
        if name in _ENCODERS:
            raise ValueError(f"encoder '{name}' is already registered")
        _ENCODERS[name] = EncoderEntry(name, factory, description, tuple(output_strides), dict(options or {}))
        return factory

    return decorator


def available_encoders() -> list[str]:
    """Registered encoder names, sorted."""
    return sorted(_ENCODERS)


def encoder_entry(name: str) -> EncoderEntry:
    """Look up an encoder, with a one-line error listing the valid names."""
    try:
        return _ENCODERS[name]
    except KeyError:
        raise CmrsegError(f"model_info.backbone: unknown encoder '{name}', expected one of {available_encoders()}") from None


def build_encoder(name: str, input_channels: int, output_stride: int, width: float, options: Mapping[str, Any]) -> nn.Module:
    """Build encoder ``name``; an output stride it does not support raises ``ValueError``."""
    entry = encoder_entry(name)
    if output_stride not in entry.output_strides:
        strides = " or ".join(map(str, entry.output_strides))
        kind = "a fixed output stride of" if len(entry.output_strides) == 1 else "output stride"
        raise ValueError(f"backbone {name} ({entry.description}) has {kind} {strides}, got output_stride {output_stride}")
    return entry.factory(input_channels, output_stride, width, options)
