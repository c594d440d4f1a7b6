"""Per-image, per-structure Dice and 95th-percentile Hausdorff distance (pixels).

Dice follows the origin study: computed per image and structure, a structure absent from both
prediction and truth counts as 1, then averaged over images. HD95 is 0 when a structure is absent
from both; when it is absent from only one of them (a miss or a false detection) it is the image
diagonal in pixels, the largest distance the image allows (as segmentation challenges do), so a
miss can only raise the mean. Summaries also count per structure the ``misses`` (in the truth,
predicted empty) and ``false_detections`` (predicted, absent from the truth). Masks of different
shapes are an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from cmrseg.constants import STRUCTURES
from cmrseg.errors import CmrsegError


def _regions(pred: np.ndarray, truth: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
    """Where ``label`` is in each mask; masks of different shapes are a one-line error."""
    if pred.shape != truth.shape:
        raise CmrsegError(f"prediction of shape {pred.shape} cannot be scored against a mask of shape {truth.shape}")
    return pred == label, truth == label


def dice_score(pred: np.ndarray, truth: np.ndarray, label: int) -> float:
    """Dice of class ``label`` between two integer masks; 1.0 when absent from both."""
    p, t = _regions(pred, truth, label)
    total = int(p.sum()) + int(t.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, t).sum()) / total


def _surface(region: np.ndarray) -> np.ndarray:
    return region & ~ndimage.binary_erosion(region, border_value=0)


def diagonal(shape: Sequence[int], spacing: Sequence[float] | None = None) -> float:
    """Length of the image's (or volume's) diagonal: in pixels, or in mm with the voxel ``spacing``."""
    steps = spacing if spacing is not None else [1.0] * len(shape)
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, steps, strict=True))))


def hd95_score(pred: np.ndarray, truth: np.ndarray, label: int, spacing: Sequence[float] | None = None) -> float:
    """Symmetric 95th-percentile surface distance of class ``label`` in pixels (in mm with ``spacing``, for
    volumes too); 0 when absent from both, the diagonal when absent from only one."""
    p, t = _regions(pred, truth, label)
    if not p.any() and not t.any():
        return 0.0
    if not p.any() or not t.any():
        return diagonal(truth.shape, spacing)
    sampling = None if spacing is None else tuple(float(s) for s in spacing)
    surface_p, surface_t = _surface(p), _surface(t)
    dist_to_t = ndimage.distance_transform_edt(~surface_t, sampling=sampling)
    dist_to_p = ndimage.distance_transform_edt(~surface_p, sampling=sampling)
    distances = np.concatenate([dist_to_t[surface_p], dist_to_p[surface_t]])
    return float(np.percentile(distances, 95))


def image_metrics(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None) -> dict[str, dict[str, float]]:
    """Dice and HD95 (with ``spacing``: in mm) of each structure for one image or volume, plus their mean;
    ``misses`` and ``false_detections`` are 1 for a structure missed or falsely detected in it."""
    dice = {name: dice_score(pred, truth, label) for label, name in enumerate(STRUCTURES, start=1)}
    hd95 = {name: hd95_score(pred, truth, label, spacing) for label, name in enumerate(STRUCTURES, start=1)}
    dice["mean"] = float(np.mean([dice[name] for name in STRUCTURES]))
    hd95["mean"] = float(np.mean([hd95[name] for name in STRUCTURES]))
    present = {name: (bool((pred == label).any()), bool((truth == label).any()))
               for label, name in enumerate(STRUCTURES, start=1)}
    return {"dice": dice, "hd95": hd95,
            "misses": {name: int(t and not p) for name, (p, t) in present.items()},
            "false_detections": {name: int(p and not t) for name, (p, t) in present.items()}}


def summarize(ids: list[str], preds: list[np.ndarray], truths: list[np.ndarray]) -> dict[str, Any]:
    """Evaluate a set of images: ``{"dice", "hd95", "misses", "false_detections", "n_images", "per_image"}``."""
    per_image = [{"id": i, **image_metrics(p, t)} for i, p, t in zip(ids, preds, truths, strict=True)]
    return {**aggregate(per_image), "per_image": per_image}


def aggregate(per_image: list[dict[str, Any]]) -> dict[str, Any]:
    """Average per-image rows (``{"dice": {...}, "hd95": {...}, ...}``) into one summary; sum the miss counts."""
    if not per_image:
        raise CmrsegError("no images to score")
    dice = {k: float(np.mean([row["dice"][k] for row in per_image])) for k in STRUCTURES}
    dice["mean"] = float(np.mean([dice[k] for k in STRUCTURES]))
    hd95 = {k: float(np.mean([row["hd95"][k] for row in per_image])) for k in (*STRUCTURES, "mean")}
    counts = {key: {k: int(sum(row[key][k] for row in per_image)) for k in STRUCTURES}
              for key in ("misses", "false_detections")}
    return {"dice": dice, "hd95": hd95, **counts, "n_images": len(per_image)}


def batch_dice(preds: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> dict[str, float]:
    """Fast per-image Dice averaged over a batch (validation during training, no distances)."""
    dice = {name: float(np.mean([dice_score(p, t, label) for p, t in zip(preds, truths)]))
            for label, name in enumerate(STRUCTURES, start=1)}
    dice["mean"] = float(np.mean([dice[name] for name in STRUCTURES]))
    return dice
