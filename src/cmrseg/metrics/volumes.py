"""Per-volume metrics: 3D Dice and HD95 of each structure, in mm where the spacing is known.

Dice is computed over the whole volume (all slices at once), a structure absent from both prediction and
truth counting as 1. HD95 is the 95th-percentile symmetric distance between the two surfaces, measured
with the voxel spacing (mm) when it is known and in voxels otherwise (``unit`` says which). A structure
present in only one of the two gets the volume's diagonal as its HD95 (the largest distance the volume
allows), so a missed or invented structure can only make the mean worse, never drop out of it.

Slices are also summarised by position: the slices of a volume are cut into thirds from the first
(base, as ACDC orders them) to the last (apex), and the per-slice 2D Dice of each third is averaged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cmrseg.constants import STRUCTURES
from cmrseg.data.slicing import POSITIONS, slice_positions
from cmrseg.metrics.slices import dice_score, image_metrics


def volume_metrics(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None) -> dict[str, Any]:
    """3D Dice and HD95 of each structure and their means, the ``misses`` and ``false_detections`` (1 per
    structure missed or invented in the volume) and the HD95 ``unit``: :func:`cmrseg.metrics.image_metrics`
    over the whole volume."""
    return {**image_metrics(pred, truth, spacing), "unit": "mm" if spacing is not None else "voxels"}


def slice_dice(pred: np.ndarray, truth: np.ndarray) -> list[dict[str, float]]:
    """2D Dice per slice (last axis) and structure, absent-in-both = 1."""
    rows = []
    for z in range(truth.shape[2]):
        row = {name: dice_score(pred[:, :, z], truth[:, :, z], label) for label, name in enumerate(STRUCTURES, start=1)}
        row["mean"] = float(np.mean([row[name] for name in STRUCTURES]))
        rows.append(row)
    return rows


def mean_rows(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Key-wise mean of metric rows (NaN when there are none)."""
    keys = (*STRUCTURES, "mean")
    return {key: float(np.mean([row[key] for row in rows])) if rows else math.nan for key in keys}


def summarize_volumes(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean 3D Dice / HD95 over all volumes and separately for ED and ES, with miss counts, and slice Dice by position;
    where the rows come from two or more diagnosis groups (``group``, ACDC's ``Info.cfg``), also per group
    (``group DCM`` ...), since a model's failures gather in some pathologies.

    ``results`` rows carry ``phase``, ``dice``, ``hd95``, ``misses``, ``false_detections`` and ``slice_dice``
    with ``positions`` (as :func:`evaluate_volume` returns), and optionally ``group``."""
    groups = {"all": list(results), "ED": [r for r in results if r.get("phase") == "ED"],
              "ES": [r for r in results if r.get("phase") == "ES"]}
    diagnoses = sorted({r["group"] for r in results if r.get("group")})
    if len(diagnoses) > 1:
        groups.update({f"group {name}": [r for r in results if r.get("group") == name] for name in diagnoses})
    summary: dict[str, Any] = {}
    for name, rows in groups.items():
        if not rows:
            continue
        summary[name] = {
            "n_volumes": len(rows),
            "dice": mean_rows([r["dice"] for r in rows]),
            "hd95": mean_rows([r["hd95"] for r in rows]),
            "misses": {s: sum(r["misses"][s] for r in rows) for s in STRUCTURES},
            "false_detections": {s: sum(r["false_detections"][s] for r in rows) for s in STRUCTURES},
        }
    positions = {pos: mean_rows([d for r in results for d, p in zip(r["slice_dice"], r["positions"]) if p == pos])
                 for pos in POSITIONS}
    counts = {pos: sum(p == pos for r in results for p in r["positions"]) for pos in POSITIONS}
    units = {r["unit"] for r in results}
    return {"volumes": summary, "positions": {pos: {"n_slices": counts[pos], "dice": positions[pos]} for pos in POSITIONS},
            "hd95_unit": units.pop() if len(units) == 1 else "mixed (mm and voxels)"}


def evaluate_volume(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None) -> dict[str, Any]:
    """Everything cmrseg reports for one volume: 3D metrics, per-slice Dice and each slice's position."""
    result = volume_metrics(pred, truth, spacing)
    result["slice_dice"] = slice_dice(pred, truth)
    result["positions"] = slice_positions(truth.shape[2])
    return result
