"""Intensity normalisation, in both forms: NumPy for data loading and prediction, torch inside an ensemble.

Both follow one rule per mode. ``dataset``: ``(x - mean) / std`` with the mean/std of the training
split. ``per_image``: each image z-scored by its own mean and standard deviation, the latter floored
at :data:`MIN_STD` so a blank image stays finite. :class:`Normalization` takes uint8 images (scaled
to [0, 1] first); :class:`MemberNormalization` takes images already scaled to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

MIN_STD = 1e-6
"""Floor of a per-image standard deviation."""


@dataclass(frozen=True)
class Normalization:
    """Intensity normalisation stored with every run (``normalization.json``).

    ``dataset``: ``(x/255 - mean) / std`` with mean/std of the training split (fitted, not hard-coded).
    ``per_image``: each image z-scored by its own mean/std (robust to scanner intensity scale).
    """

    mode: str = "dataset"
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, images: list[np.ndarray], mode: str = "dataset") -> Normalization:
        """Fit ``mode`` on uint8 ``images`` (the training split)."""
        if mode == "per_image":
            return cls(mode)
        pixels = np.concatenate([image.reshape(-1) for image in images]).astype(np.float64) / 255.0
        return cls(mode, float(pixels.mean()), float(pixels.std() or 1.0))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The normalised float32 image of a uint8 (or raw float) ``image``."""
        scaled = image.astype(np.float32) / 255.0
        if self.mode == "per_image":
            return (scaled - scaled.mean()) / max(float(scaled.std()), MIN_STD)
        return (scaled - self.mean) / self.std

    def apply_channels(self, stack: np.ndarray) -> np.ndarray:
        """``C x H x W`` float32 of a ``C x H x W`` stack (a slice and its neighbours), each channel normalised on
        its own, so the middle channel is what :meth:`apply` gives the slice and a missing neighbour (zeros)
        stays a constant plane."""
        return np.stack([self.apply(channel) for channel in stack])

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        return cls(str(data["mode"]), float(data["mean"]), float(data["std"]))


class MemberNormalization(nn.Module):
    """A :class:`Normalization` as a torch module on ``N x C x H x W`` input scaled to [0, 1] (an ensemble member's);
    ``per_image`` normalises each channel on its own, as :meth:`Normalization.apply_channels` does."""

    def __init__(self, mode: str, mean: float, std: float) -> None:
        super().__init__()
        self.per_image = mode == "per_image"
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    @classmethod
    def from_normalization(cls, normalization: Normalization) -> MemberNormalization:
        return cls(normalization.mode, normalization.mean, normalization.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_image:
            mean = x.mean(dim=(-2, -1), keepdim=True)
            std = x.std(dim=(-2, -1), keepdim=True, unbiased=False).clamp_min(MIN_STD)
            return (x - mean) / std
        return (x - self.mean) / self.std
