"""Augmentation pipelines built with albumentations from config (a preset name or a list of specs).

Image and mask go through the same spatial transforms (albumentations applies nearest-neighbour
interpolation to masks), so they stay aligned. Normalisation is applied afterwards in the dataset.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import albumentations as A
import cv2

from cmrseg.errors import CmrsegError

BORDER_MODES = {"BORDER_REPLICATE": cv2.BORDER_REPLICATE, "BORDER_CONSTANT": cv2.BORDER_CONSTANT, "BORDER_REFLECT": cv2.BORDER_REFLECT_101}

PRESETS: dict[str, list[dict[str, Any]]] = {
    "none": [],
    "origin": [
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "VerticalFlip", "p": 0.5},
        {"name": "RandomRotate90", "p": 0.5},
        {"name": "ShiftScaleRotate", "shift_limit": 0.0625, "scale_limit": 0.1, "rotate_limit": 15,
         "border_mode": "BORDER_REPLICATE", "p": 0.5},
        {"name": "Affine", "shear": [-10, 10], "border_mode": "BORDER_REPLICATE", "p": 0.3},
        {"name": "OneOf", "p": 0.3, "transforms": [
            {"name": "GaussNoise", "std_range": [0.02, 0.06]},
            {"name": "Blur", "blur_limit": [3, 3]},
        ]},
    ],
    "geometric": [
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "VerticalFlip", "p": 0.5},
        {"name": "RandomRotate90", "p": 0.5},
        {"name": "Affine", "scale": [0.85, 1.15], "rotate": [-20, 20], "translate_percent": [-0.06, 0.06],
         "border_mode": "BORDER_REPLICATE", "p": 0.7},
    ],
}


def _convert_arguments(spec: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = {key: value for key, value in spec.items() if key not in ("name", "transforms")}
    for key, value in kwargs.items():
        if isinstance(value, list):
            kwargs[key] = tuple(value)
        if key in ("border_mode", "mask_border_mode") and isinstance(value, str):
            if value not in BORDER_MODES:
                raise CmrsegError(f"augmentation: unknown {key} '{value}', expected one of {sorted(BORDER_MODES)}")
            kwargs[key] = BORDER_MODES[value]
    return kwargs


def build_transform(spec: Mapping[str, Any]) -> A.BasicTransform | A.BaseCompose:
    """Build one albumentations transform from ``{"name": ..., **kwargs}`` (nested for OneOf/SomeOf)."""
    name = spec.get("name")
    cls = getattr(A, str(name), None)
    if not isinstance(cls, type) or not issubclass(cls, (A.BasicTransform, A.BaseCompose)):
        raise CmrsegError(f"augmentation: '{name}' is not an albumentations transform")
    kwargs = _convert_arguments(spec)
    if "transforms" in spec:
        kwargs["transforms"] = [build_transform(child) for child in spec["transforms"] or []]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return cls(**kwargs)
    except (TypeError, ValueError) as err:
        message = str(err).splitlines()[0]
        raise CmrsegError(f"augmentation: bad arguments for {name}: {message}") from None


def as_specs(augmentation: str | list[Any]) -> list[dict[str, Any]]:
    """Expand a preset name, or turn pydantic transform specs into plain dictionaries."""
    if isinstance(augmentation, str):
        if augmentation not in PRESETS:
            raise CmrsegError(f"augmentation: unknown preset '{augmentation}', expected one of {sorted(PRESETS)}")
        return PRESETS[augmentation]
    return [spec if isinstance(spec, dict) else spec.model_dump(exclude_none=True) for spec in augmentation]


def build_pipeline(augmentation: str | list[Any], seed: int | None = None) -> A.Compose:
    """The whole augmentation pipeline; an empty one (preset ``none``) returns inputs unchanged."""
    return A.Compose([build_transform(spec) for spec in as_specs(augmentation)], seed=seed)
