"""Voxel spacing: the one owner of what a sane spacing and a sane resampling are.

A spacing is ``(rows, columns, slices)`` in mm, or ``(rows, columns)`` where only the in-plane spacing is meant
(a plan's target spacing). Wherever one is read (a NIfTI header, a run's ``data.json``, an
ONNX export's metadata) it goes through :func:`check_spacing`, and wherever a resampling factor is computed from
two spacings it goes through :func:`check_factors`, so a header in microns or metres, a zero, negative or string
spacing, or a resampling that would shrink or blow up an image tenfold is one line naming its source instead of
an absurd prediction.

Bounds (cardiac MR short-axis: ACDC in-plane 0.7-1.9 mm, slices 5-10 mm):

- in-plane (rows, columns): :data:`IN_PLANE_MM`, 0.1 to 10 mm;
- slice thickness / spacing: :data:`SLICE_MM`, 0.5 to 30 mm;
- resampling factor (input spacing / target spacing) per axis: :data:`FACTOR_RANGE`, 0.1 to 10.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from cmrseg.errors import CmrsegError

Spacing = tuple[float, ...]


IN_PLANE_MM = (0.1, 10.0)
SLICE_MM = (0.5, 30.0)
FACTOR_RANGE = (0.1, 10.0)


def _number(value: object) -> float | None:
    """``value`` as a finite float, or None for a string, bool, NaN, infinity or anything else."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def check_spacing(spacing: object, source: str) -> Spacing | None:
    """``spacing`` (rows, columns and, when given, slices, in mm) as a tuple of 2 or 3 floats when each lies in its
    bounds (:data:`IN_PLANE_MM`, :data:`SLICE_MM`); None (unknown) stays None; anything else (not two or three
    numbers, zero, negative, a string, far out of bounds) is a one-line error naming ``source`` (the file and key
    it came from)."""
    if spacing is None:
        return None
    values = [_number(v) for v in spacing] if isinstance(spacing, (list, tuple, np.ndarray)) else []
    if len(values) not in (2, 3) or any(v is None for v in values):
        raise CmrsegError(f"{source}: voxel spacing {spacing!r} is not two or three numbers (rows, columns[, slices] "
                          "in mm)")
    numbers: Spacing = tuple(values)  # type: ignore[arg-type]
    for axis, value, (low, high) in zip(("row", "column", "slice"), numbers, (IN_PLANE_MM, IN_PLANE_MM, SLICE_MM)):
        if not low <= value <= high:
            raise CmrsegError(f"{source}: {axis} spacing {value:g} mm is outside {low:g}-{high:g} mm (spacing "
                              f"{'x'.join(f'{v:g}' for v in numbers)}); check the header's unit or the recorded spacing")
    return numbers


def check_factors(factors: Sequence[float], source: str) -> tuple[float, ...]:
    """Resampling factors (input spacing / target spacing, per axis), or a one-line error naming ``source`` when
    one lies outside :data:`FACTOR_RANGE` (an image shrunk or blown up more than tenfold is not the same image)."""
    low, high = FACTOR_RANGE
    if any(not low <= f <= high for f in factors):
        raise CmrsegError(f"{source}: resampling by {'x'.join(f'{f:.3g}' for f in factors)} to the training spacing is "
                          f"outside {low:g}-{high:g} per axis; the volume's or the model's spacing is wrong")
    return tuple(float(f) for f in factors)


def spacing_text(spacing: Sequence[float] | None) -> str:
    """``1.5x1.5x8`` (mm), or ``unknown``, as tables and manifests print a voxel spacing."""
    return "unknown" if spacing is None else "x".join(f"{s:g}" for s in spacing)
