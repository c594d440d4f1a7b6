"""A dataset's fingerprint: what the plan is chosen from (spacings, slice sizes, heart extent, class sizes).

It is computed from the slices training reads (:class:`cmrseg.data.slicing.Sample`), so ``cmrseg plan`` and the
plan inside ``train`` see the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from cmrseg.constants import NUM_CLASSES


class Fingerprint(BaseModel):
    """Summary statistics of a labeled training set (in-plane sizes are rows x columns)."""

    n_slices: int
    n_volumes: int
    n_patients: int
    spacing_known: bool
    spacing_median: list[float] | None = None
    spacing_min: list[float] | None = None
    spacing_max: list[float] | None = None
    slice_shape_median: list[float]
    slice_shape_max: list[int]
    foreground_extent_mm_p95: list[float] | None = None
    """95th percentile over volumes of the labeled heart's in-plane bounding box (mm; None without spacing)."""
    foreground_extent_px_p95: list[float]
    """The same in pixels of each volume's own grid."""
    class_fractions: list[float]
    """Share of labeled pixels of each class (background, RV, Myo, LV)."""
    intensity_percentiles: dict[str, float]
    """0.5th, 50th and 99.5th percentile of the 8-bit slices (after each volume's 0.5-99.5 % mapping)."""


def _volume_key(sample: Any) -> str:
    return sample.volume if sample.volume is not None else sample.id


def _extent(masks: Sequence[np.ndarray]) -> tuple[int, int] | None:
    """In-plane bounding box (rows, columns) of the labeled pixels of a volume's slices, or None if unlabeled."""
    union = np.zeros(masks[0].shape, dtype=bool)
    for mask in masks:
        if mask.shape == union.shape:
            union |= mask > 0
    rows, cols = np.nonzero(union)
    if not len(rows):
        return None
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def fingerprint_samples(samples: Sequence[Any]) -> Fingerprint:
    """The fingerprint of labeled slices (volume slices know their volume and spacing; PNG slices are their own)."""
    by_volume: dict[str, list[Any]] = {}
    for sample in samples:
        by_volume.setdefault(_volume_key(sample), []).append(sample)
    shapes = np.array([s.slice_image.shape for s in samples], dtype=float)
    spacings = [s.spacing for s in samples]
    known = bool(spacings) and all(sp is not None for sp in spacings)
    spacing_array = np.array(spacings, dtype=float) if known else None
    extents_px, extents_mm = [], []
    for members in by_volume.values():
        masks = [m.mask for m in members if m.mask is not None]
        extent = _extent(masks) if masks else None
        if extent is None:
            continue
        extents_px.append(extent)
        if known:
            spacing = members[0].spacing
            extents_mm.append((extent[0] * spacing[0], extent[1] * spacing[1]))
    counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    for sample in samples:
        if sample.mask is not None:
            counts += np.bincount(sample.mask.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    pixels = np.concatenate([s.slice_image.ravel()[::7] for s in samples]) if samples else np.zeros(1)
    low, mid, high = np.percentile(pixels, [0.5, 50, 99.5])

    def p95(values: list[tuple[float, float]]) -> list[float]:
        return [round(float(v), 2) for v in np.percentile(np.array(values, dtype=float), 95, axis=0)] if values else [0.0, 0.0]

    return Fingerprint(
        n_slices=len(samples),
        n_volumes=sum(1 for key in by_volume if by_volume[key][0].volume is not None),
        n_patients=len({s.group for s in samples if s.group is not None}),
        spacing_known=known,
        spacing_median=[round(float(v), 4) for v in np.median(spacing_array, axis=0)] if known else None,
        spacing_min=[round(float(v), 4) for v in spacing_array.min(axis=0)] if known else None,
        spacing_max=[round(float(v), 4) for v in spacing_array.max(axis=0)] if known else None,
        slice_shape_median=[float(v) for v in np.median(shapes, axis=0)],
        slice_shape_max=[int(v) for v in shapes.max(axis=0)],
        foreground_extent_mm_p95=p95(extents_mm) if known and extents_mm else None,
        foreground_extent_px_p95=p95(extents_px),
        class_fractions=[round(float(c), 5) for c in counts / max(int(counts.sum()), 1)],
        intensity_percentiles={"p0.5": float(low), "p50": float(mid), "p99.5": float(high)},
    )
