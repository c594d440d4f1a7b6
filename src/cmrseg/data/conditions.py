"""What a slice of a volume knows beyond its pixels, fed to a conditioned network as constant input planes.

``model_info.conditions`` names them, in this order of channels after the image's:

``phase``     the cardiac phase of the slice's volume: -1 end-diastole (ED), +1 end-systole (ES). Annotators
              label the heart differently in the two phases (ACDC stops the right ventricle one or two slices
              earlier at ES), which a 2D model cannot see in one image (BENCHMARKS.md, #11).
``position``  where the slice lies in its stack: -1 the first slice (ACDC: the base), +1 the last (apex).

The planes are appended after intensity normalisation and augmentation, so neither changes them; flips and
zooms of a constant plane are the plane itself. Only slices of volumes know these values: a PNG slice, or a
volume of unknown phase for a phase-conditioned model, is a one-line error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cmrseg.errors import CmrsegError

CONDITIONS = ("phase", "position")
PHASE_VALUES = {"ED": -1.0, "ES": 1.0}


def _phase_value(phase: str | None, where: str) -> float:
    if phase not in PHASE_VALUES:
        raise CmrsegError(f"{where}: this model is conditioned on the cardiac phase (model_info.conditions), but the "
                          "phase is unknown; name the case CASE_ED / CASE_ES or give an ACDC Info.cfg with ED and ES")
    return PHASE_VALUES[phase]  # type: ignore[index]


def _position_value(slice_index: int | None, n_slices: int | None, where: str) -> float:
    if slice_index is None or n_slices is None:
        raise CmrsegError(f"{where}: this model is conditioned on the slice position (model_info.conditions), which "
                          "only slices of a NIfTI volume have")
    return 0.0 if n_slices < 2 else 2.0 * slice_index / (n_slices - 1) - 1.0


def condition_values(conditions: Sequence[str], phase: str | None, slice_index: int | None, n_slices: int | None,
                     where: str) -> np.ndarray:
    """The ``len(conditions)`` values (float32) of one slice; ``where`` names it in the error when one is unknown."""
    values = []
    for name in conditions:
        if name == "phase":
            values.append(_phase_value(phase, where))
        elif name == "position":
            values.append(_position_value(slice_index, n_slices, where))
        else:
            raise CmrsegError(f"unknown condition {name!r}; expected one of {', '.join(CONDITIONS)}")
    return np.asarray(values, dtype=np.float32)


def with_planes(batch: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``N x (C+M) x H x W``: ``batch`` (``N x C x H x W``) with each image's M ``values`` (``N x M``) appended
    as constant planes."""
    planes = np.broadcast_to(values[:, :, None, None], (*values.shape, *batch.shape[-2:]))
    return np.concatenate([batch, planes.astype(batch.dtype)], axis=1)
