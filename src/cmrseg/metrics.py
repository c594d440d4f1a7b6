"""Per-image, per-structure Dice and 95th-percentile Hausdorff distance (pixels).

Dice follows the origin study: computed per image and structure, a structure absent from both
prediction and truth counts as 1, then averaged over images. HD95 is 0 when a structure is absent
from both, undefined (NaN, left out of the mean) when it is absent from only one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from cmrseg.constants import STRUCTURES


def dice_score(pred: np.ndarray, truth: np.ndarray, label: int) -> float:
    """Dice of class ``label`` between two integer masks; 1.0 when absent from both."""
    p, t = pred == label, truth == label
    total = int(p.sum()) + int(t.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, t).sum()) / total


def _surface(region: np.ndarray) -> np.ndarray:
    return region & ~ndimage.binary_erosion(region, border_value=0)


def hd95_score(pred: np.ndarray, truth: np.ndarray, label: int) -> float:
    """Symmetric 95th-percentile surface distance of class ``label`` in pixels."""
    p, t = pred == label, truth == label
    if not p.any() and not t.any():
        return 0.0
    if not p.any() or not t.any():
        return math.nan
    surface_p, surface_t = _surface(p), _surface(t)
    dist_to_t = ndimage.distance_transform_edt(~surface_t)
    dist_to_p = ndimage.distance_transform_edt(~surface_p)
    distances = np.concatenate([dist_to_t[surface_p], dist_to_p[surface_t]])
    return float(np.percentile(distances, 95))


def image_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, float]]:
    """Dice and HD95 of each structure for one image, plus their mean."""
    dice = {name: dice_score(pred, truth, label) for label, name in enumerate(STRUCTURES, start=1)}
    hd95 = {name: hd95_score(pred, truth, label) for label, name in enumerate(STRUCTURES, start=1)}
    dice["mean"] = float(np.mean([dice[name] for name in STRUCTURES]))
    hd_values = [hd95[name] for name in STRUCTURES if not math.isnan(hd95[name])]
    hd95["mean"] = float(np.mean(hd_values)) if hd_values else math.nan
    return {"dice": dice, "hd95": hd95}


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarize(ids: list[str], preds: list[np.ndarray], truths: list[np.ndarray]) -> dict[str, Any]:
    """Evaluate a set of images: ``{"dice": {...}, "hd95": {...}, "per_image": [{"id", "dice", "hd95"}]}``."""
    per_image = [{"id": i, **image_metrics(p, t)} for i, p, t in zip(ids, preds, truths, strict=True)]
    return {**aggregate(per_image), "per_image": per_image}


def aggregate(per_image: list[dict[str, Any]]) -> dict[str, Any]:
    """Average per-image rows (``{"dice": {...}, "hd95": {...}}``) into one summary, HD95 over defined values."""
    dice = {k: float(np.mean([row["dice"][k] for row in per_image])) for k in STRUCTURES}
    dice["mean"] = float(np.mean([dice[k] for k in STRUCTURES]))
    hd95 = {k: _nanmean([row["hd95"][k] for row in per_image]) for k in (*STRUCTURES, "mean")}
    return {"dice": dice, "hd95": hd95, "n_images": len(per_image)}


def batch_dice(preds: np.ndarray, truths: np.ndarray) -> dict[str, float]:
    """Fast per-image Dice averaged over a batch (validation during training, no distances)."""
    dice = {name: float(np.mean([dice_score(p, t, label) for p, t in zip(preds, truths)]))
            for label, name in enumerate(STRUCTURES, start=1)}
    dice["mean"] = float(np.mean([dice[name] for name in STRUCTURES]))
    return dice
