"""What the config parts share: strict models (an unknown key is an error, so a typo never falls back to a
default), the arithmetic choices and the check of per-class weights."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

from cmrseg.constants import NUM_CLASSES

Precision = Literal["float32", "bfloat16"]
"""Arithmetic of the torch network: float32, or bfloat16 autocast (faster on CPUs with AVX512-BF16 or AMX, and GPUs)."""
PRECISIONS: tuple[str, ...] = get_args(Precision)


class Strict(BaseModel):
    """A config model that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def check_class_weights(weights: list[float] | None) -> list[float] | None:
    """One positive weight per class (background, RV, Myo, LV), or ValueError; None passes."""
    if weights is not None and (len(weights) != NUM_CLASSES or min(weights) <= 0):
        raise ValueError(f"expected {NUM_CLASSES} positive numbers (background, RV, Myo, LV), got {weights}")
    return weights
