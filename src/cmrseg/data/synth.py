"""Synthetic short-axis phantoms in the cmr96 folder layout, so demos and tests run without real data.

Each phantom has a bright LV blood pool inside a darker myocardium ring and a bright RV crescent wrapped
around one side of it, on a textured background with noise. Size, position, shape and rotation are
random, and everything is drawn from one generator seeded by ``seed``, so a seed gives the same set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from cmrseg.utils import atomic_dir


def _ellipse(grid_y: np.ndarray, grid_x: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    dy, dx = grid_y - cy, grid_x - cx
    u = dx * cos + dy * sin
    v = -dx * sin + dy * cos
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random background between roughly 20 and 110 with a few organ-like blobs."""
    coarse = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), sigma=size / 12)
    coarse = (coarse - coarse.min()) / (np.ptp(coarse) or 1.0)
    fine = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), sigma=1.5)
    return 20 + 90 * coarse + 12 * fine


def make_phantom(rng: np.random.Generator, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Draw one (image uint8, mask uint8) pair of ``size`` x ``size`` pixels."""
    grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float64)
    scale = size / 96.0
    cy, cx = size / 2 + rng.uniform(-10, 10) * scale, size / 2 + rng.uniform(-10, 10) * scale
    angle = rng.uniform(0, 2 * np.pi)
    lv_r = rng.uniform(8, 15) * scale
    lv_ry, lv_rx = lv_r * rng.uniform(0.85, 1.15), lv_r
    wall = rng.uniform(3, 6) * scale
    lv = _ellipse(grid_y, grid_x, cy, cx, lv_ry, lv_rx, angle)
    epi = _ellipse(grid_y, grid_x, cy, cx, lv_ry + wall, lv_rx + wall, angle)
    side = angle + rng.uniform(-0.4, 0.4)
    offset = (lv_r + wall) * rng.uniform(0.55, 0.85)
    rv_outer = _ellipse(
        grid_y, grid_x, cy + offset * np.sin(side), cx + offset * np.cos(side),
        (lv_r + wall) * rng.uniform(1.1, 1.5), (lv_r + wall) * rng.uniform(0.8, 1.1), side,
    )
    rv = rv_outer & ~ndimage.binary_dilation(epi, iterations=max(1, int(round(1.5 * scale))))
    mask = np.zeros((size, size), np.uint8)
    mask[rv] = 1
    mask[epi & ~lv] = 2
    mask[lv] = 3
    image = _texture(rng, size)
    image[epi] = rng.uniform(55, 85)
    image[lv] = rng.uniform(170, 230)
    image[rv] = rng.uniform(140, 210)
    image = ndimage.gaussian_filter(image, sigma=0.8) + rng.normal(0, rng.uniform(4, 12), image.shape)
    return np.clip(image, 0, 255).round().astype(np.uint8), mask


MIN_SIZE = 16
"""Smallest phantom side in pixels: below it the heart does not fit."""


def write_synthetic_dataset(
    out: str | Path, count: int, seed: int = 0, size: int = 96, with_masks: bool = True, overwrite: bool = False,
) -> Path:
    """Write ``count`` phantoms as ``out/image/synthN.png`` (+ ``out/mask/synthN_mask.png``); returns ``out``.

    ``out`` must be new, empty, an earlier synth output, or ``overwrite`` (see :mod:`cmrseg.outputs`)."""
    from cmrseg.errors import CmrsegError
    from cmrseg.outputs import check_output_dir

    if count < 1:
        raise CmrsegError(f"--count must be at least 1, got {count}")
    if size < MIN_SIZE:
        raise CmrsegError(f"--size must be at least {MIN_SIZE} pixels, got {size}")
    if seed < 0:
        raise CmrsegError(f"--seed must be 0 or more, got {seed}")
    planned = [f"image/synth{i}.png" for i in range(1, count + 1)]
    if with_masks:
        planned += [f"mask/synth{i}_mask.png" for i in range(1, count + 1)]
    out = check_output_dir(out, "data synth", overwrite=overwrite, files=planned)
    rng = np.random.default_rng(seed)
    with atomic_dir(out, "data synth") as tmp:
        (tmp / "image").mkdir()
        if with_masks:
            (tmp / "mask").mkdir()
        for index in range(1, count + 1):
            image, mask = make_phantom(rng, size)
            Image.fromarray(image).save(tmp / "image" / f"synth{index}.png")
            if with_masks:
                Image.fromarray(mask).save(tmp / "mask" / f"synth{index}_mask.png")
    return out
