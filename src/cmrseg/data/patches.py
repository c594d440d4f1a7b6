"""Fixed-size training patches cut from whole (augmented, normalised) slices, with nnU-Net's foreground
oversampling: a share of the patches is centred on a labeled pixel, the rest anywhere in the slice."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def patch_origin(mask: np.ndarray, size: Sequence[int], rng: np.random.Generator, foreground: bool) -> tuple[int, int]:
    """Top-left corner (may be negative or past the edge: padded) of a ``size`` patch of a slice with ``mask``:
    centred on a random labeled pixel of a random present class when ``foreground`` (and any is labeled), else
    anywhere such that the patch overlaps the slice as much as it can."""
    height, width = mask.shape
    if foreground:
        classes = [c for c in np.unique(mask) if c > 0]
        if classes:
            rows, cols = np.nonzero(mask == rng.choice(classes))
            pick = rng.integers(len(rows))
            return int(rows[pick]) - size[0] // 2, int(cols[pick]) - size[1] // 2

    def corner(extent: int, side: int) -> int:
        return int(rng.integers(0, extent - side + 1)) if extent >= side else -int(rng.integers(0, side - extent + 1))

    return corner(height, size[0]), corner(width, size[1])


def crop(array: np.ndarray, origin: tuple[int, int], size: Sequence[int], fill: float = 0) -> np.ndarray:
    """The ``size`` window at ``origin`` of the last two axes of ``array``, ``fill`` outside the array."""
    out = np.full((*array.shape[:-2], size[0], size[1]), fill, dtype=array.dtype)
    top, left = origin
    height, width = array.shape[-2:]
    src_top, src_left = max(top, 0), max(left, 0)
    src_bottom, src_right = min(top + size[0], height), min(left + size[1], width)
    if src_bottom > src_top and src_right > src_left:
        out[..., src_top - top : src_bottom - top, src_left - left : src_right - left] = \
            array[..., src_top:src_bottom, src_left:src_right]
    return out
