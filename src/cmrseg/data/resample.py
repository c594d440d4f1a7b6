"""In-plane resampling of slices to a plan's spacing and back: images and probabilities linear, labels without
moving their boundaries.

OpenCV's ``resize`` aligns pixel centres (half-pixel offsets), so a resampling there and back shifts nothing. Labels
are resampled as one-hot channels (linear) and argmax-ed, nnU-Net's rule, instead of nearest neighbour, whose
rounding moves a boundary by up to half an output pixel and loses thin structures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg.constants import NUM_CLASSES
from cmrseg.data.spacing import check_factors

SPACING_TOLERANCE = 0.01
"""In-plane spacings within 1 % of the target are predicted on their own grid (no resampling)."""


def zoom_factors(spacing: Sequence[float] | None, target: Sequence[float] | None,
                 source: str | Path = "volume") -> tuple[float, float] | None:
    """In-plane zoom (rows, columns) from a grid of ``spacing`` to ``target``, or None when none is needed or known;
    a zoom outside :data:`cmrseg.data.spacing.FACTOR_RANGE` is a one-line error naming ``source``."""
    if spacing is None or target is None:
        return None
    factors = (float(spacing[0]) / float(target[0]), float(spacing[1]) / float(target[1]))
    check_factors(factors, str(source))
    return None if all(abs(f - 1.0) <= SPACING_TOLERANCE for f in factors) else factors


def zoomed_shape(shape: Sequence[int], factors: tuple[float, float]) -> tuple[int, int]:
    """The (rows, columns) of a ``shape`` slice zoomed by ``factors`` (at least one pixel each)."""
    return max(1, round(shape[0] * factors[0])), max(1, round(shape[1] * factors[1]))


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``H x W`` or ``H x W x C`` image (any dtype OpenCV resizes) resized to ``shape`` (rows, columns), bilinear."""
    import cv2

    if image.shape[:2] == tuple(shape):
        return image
    resized = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return resized[:, :, None] if image.ndim == 3 and resized.ndim == 2 else resized


def resize_channels_first(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``C x H x W`` float maps (probabilities) resized to ``C x rows x columns``, bilinear."""
    if probs.shape[1:] == tuple(shape):
        return probs
    moved = np.ascontiguousarray(probs.transpose(1, 2, 0))
    return np.ascontiguousarray(resize_image(moved, shape).transpose(2, 0, 1))


def resize_label(label: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``H x W`` class mask resized to ``shape``: each class's one-hot map bilinear, then the argmax."""
    if label.shape == tuple(shape):
        return label
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[label]
    return resize_image(onehot, shape).argmax(axis=2).astype(np.uint8)


def resample_sample(sample: Any, target: Sequence[float]) -> Any:
    """A volume slice (:class:`~cmrseg.data.slicing.Sample`) resampled in-plane to ``target`` mm (itself when its spacing
    is unknown or already there); its spacing then says the new grid."""
    factors = zoom_factors(sample.spacing, target, f"slice {sample.id}")
    if factors is None:
        return sample
    shape = zoomed_shape(sample.image.shape[:2], factors)
    mask = None if sample.mask is None else resize_label(sample.mask, shape)
    spacing = (float(target[0]), float(target[1]), *sample.spacing[2:])
    return replace(sample, image=resize_image(sample.image, shape), mask=mask, spacing=spacing)
