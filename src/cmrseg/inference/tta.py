"""Test-time augmentation: flips of the normalised batch and warps (zooms, rotations, shifts) of the raw image.

A warp is applied to the raw image (black outside it) before normalisation, as training augmentation
does, and the prediction is warped back (borders extended) before the average, so a single model
and an ensemble run folder (whose members normalise) see the same input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
"""No flip, horizontal, vertical, both: the dims ``torch.flip`` takes."""

Warp = tuple[float, float, float, float]
"""Rotation (degrees), scale, shift x, shift y (pixels) about the image centre."""

IDENTITY: Warp = (0.0, 1.0, 0.0, 0.0)
AGREEMENT_STEP = 2
"""Flip-view agreement (:func:`agreement_counts`) is counted on every second pixel in each direction."""


def zoom_warp(scale: float) -> Warp:
    """The warp that magnifies ``scale`` times."""
    return (0.0, scale, 0.0, 0.0)


def sampling_matrix(warp: Warp, size: int, inverse: bool = False) -> torch.Tensor:
    """3x3 matrix taking output to input coordinates (normalised, as ``affine_grid`` wants) of ``warp``
    on an image ``size`` pixels wide, or of its inverse."""
    angle, scale, dx, dy = warp
    shift = (2 * dx / size, 2 * dy / size)
    if not inverse:
        cos, sin = math.cos(math.radians(angle)) / scale, math.sin(math.radians(angle)) / scale
        return torch.tensor([[cos, -sin, shift[0]], [sin, cos, shift[1]], [0, 0, 1]], dtype=torch.float32)
    cos, sin = math.cos(math.radians(angle)) * scale, math.sin(math.radians(angle)) * scale
    back = (-(cos * shift[0] + sin * shift[1]), -(-sin * shift[0] + cos * shift[1]))
    return torch.tensor([[cos, sin, back[0]], [-sin, cos, back[1]], [0, 0, 1]], dtype=torch.float32)


def resample(batch: torch.Tensor, matrix: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """``batch`` (N x C x H x W) resampled bilinearly through the sampling ``matrix``."""
    theta = matrix[:2].to(dtype=batch.dtype, device=batch.device)
    grid = F.affine_grid(theta.expand(batch.shape[0], 2, 3), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def zoom(batch: torch.Tensor, factor: float, padding: str = "zeros") -> torch.Tensor:
    """``batch`` (N x C x H x W) magnified ``factor`` times about the image centre, bilinearly."""
    return resample(batch, sampling_matrix(zoom_warp(factor), batch.shape[-1]), padding)


def flip_average(forward: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor,
                 flips: Sequence[tuple[int, ...]] = FLIPS, view_batch: int = 32,
                 agreement: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Mean softmax of ``forward``'s logits over ``flips`` of ``batch``, each flipped back.

    All flipped views go through ``forward`` together, ``view_batch`` at a time (few calls instead of one per view).
    With an ``agreement`` list (and two or more flips), :func:`agreement_counts` of the views is appended to it: what
    quality control (:mod:`cmrseg.qc`) needs to measure how far the views agree, from the views already computed."""
    views = torch.cat([batch.flip(dims) if dims else batch for dims in flips])
    logits = torch.cat([forward(chunk).float() for chunk in views.split(view_batch)])
    probs = torch.softmax(logits, dim=1).unflatten(0, (len(flips), len(batch)))
    back = torch.stack([view.flip(dims) if dims else view for view, dims in zip(probs, flips, strict=True)])
    mean = back.mean(dim=0)
    if agreement is not None and len(flips) > 1:
        agreement.append(agreement_counts(back, mean))
    return mean


def agreement_counts(views: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``N x S x 2`` counts of each foreground class (S = C - 1) of ``V x N x C x H x W`` view probabilities against
    their ``mean``'s argmax: pixels where a view's argmax and the mean's agree, and the two areas, summed over views;
    ``2 * first / second`` is the views' mean Dice with the consensus. Counted on every :data:`AGREEMENT_STEP`-th
    pixel in each direction: the same Dice within sampling noise, at a fraction of the cost of the arg-maxes."""
    views, mean = views[..., ::AGREEMENT_STEP, ::AGREEMENT_STEP], mean[..., ::AGREEMENT_STEP, ::AGREEMENT_STEP]
    consensus = mean.argmax(dim=1)
    labels = views.argmax(dim=2)
    classes = torch.arange(1, mean.shape[1], device=mean.device).view(1, 1, -1, 1, 1)
    view_in = labels.unsqueeze(2) == classes
    mean_in = (consensus.unsqueeze(0).unsqueeze(2) == classes).expand_as(view_in)
    overlap = (view_in & mean_in).sum(dim=(0, 3, 4))
    areas = view_in.sum(dim=(0, 3, 4)) + mean_in.sum(dim=(0, 3, 4))
    return torch.stack([overlap, areas], dim=-1).float()


def warp_average(predict: Callable[[np.ndarray], torch.Tensor], raw: np.ndarray, warps: Sequence[Warp]) -> torch.Tensor:
    """Mean over ``warps`` of ``predict`` (raw ``N x K x H x W`` images of K slices -> ``N x C x H x W``
    probabilities): each warp is applied to the raw images and its prediction warped back.

    ``predict`` is called once, on the warped images of every warp stacked, so a batching predictor
    (:func:`flip_average`) sees all views at once."""
    images = torch.from_numpy(raw.astype(np.float32))
    warped = [raw if warp == IDENTITY else resample(images, sampling_matrix(warp, raw.shape[-1])).numpy()
              for warp in warps]
    probs = predict(np.concatenate(warped)).split(len(raw))
    total = sum(p if warp == IDENTITY else resample(p, sampling_matrix(warp, raw.shape[-1], inverse=True), "border")
                for p, warp in zip(probs, warps, strict=True))
    return total / len(warps)  # type: ignore[operator]
