"""Matplotlib figures: training curves and coloured mask overlays (headless, Agg backend)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cmrseg.constants import STRUCTURES  # noqa: E402
from cmrseg.io.atomic import atomic_path  # noqa: E402

CLASS_COLORS = np.array([[0, 0, 0], [230, 60, 60], [60, 200, 90], [70, 120, 240]], dtype=np.float32)
"""RGB per class: background, RV red, Myo green, LV blue."""


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Save and close ``fig`` atomically as PNG."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_history(history: Sequence[dict[str, float]], path: str | Path) -> None:
    """Train/val loss per epoch (left) and validation Dice per structure (right)."""
    if not history:
        return
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, dice_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    loss_ax.plot(epochs, [row["train_loss"] for row in history], label="train")
    val_losses = [row["val_loss"] for row in history]
    if not all(math.isnan(v) for v in val_losses):
        loss_ax.plot(epochs, val_losses, label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    loss_ax.legend()
    for name in (*STRUCTURES, "mean"):
        values = [row.get(f"dice_{name}", math.nan) for row in history]
        if not all(math.isnan(v) for v in values):
            dice_ax.plot(epochs, values, label=name, linewidth=2.2 if name == "mean" else 1.2)
    dice_ax.set(xlabel="epoch", ylabel="Dice", title="Validation Dice", ylim=(0, 1))
    if dice_ax.lines:
        dice_ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 picture of ``image`` with ``mask`` classes blended in colour."""
    gray = np.repeat(image[..., None].astype(np.float32), 3, axis=-1)
    colors = CLASS_COLORS[mask]
    blend = np.where(mask[..., None] > 0, (1 - alpha) * gray + alpha * colors, gray)
    return blend.clip(0, 255).astype(np.uint8)


MONTAGE_TILE = 160
"""Slices smaller than this (pixels) are magnified (nearest neighbour) in a montage."""


def contour_overlay(image: np.ndarray, mask: np.ndarray, width: int = 1) -> np.ndarray:
    """RGB uint8 picture of ``image`` with the outline (``width`` pixels, inside each region) of every class of
    ``mask`` in its colour: the image under the labels stays readable."""
    from scipy import ndimage

    picture = np.repeat(image[..., None], 3, axis=-1).astype(np.uint8)
    for label in range(1, len(CLASS_COLORS)):
        region = mask == label
        if region.any():
            edge = region & ~ndimage.binary_erosion(region, iterations=width, border_value=0)
            picture[edge] = CLASS_COLORS[label].astype(np.uint8)
    return picture


def _labelled(tile: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    picture = Image.fromarray(tile)
    draw = ImageDraw.Draw(picture)
    box = draw.textbbox((2, 1), text)
    draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(0, 0, 0))
    draw.text((2, 1), text, fill=(255, 255, 0))
    return np.asarray(picture)


def _legend_strip(width: int, with_truth: bool) -> np.ndarray:
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, 16), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    left = 4
    for label, name in enumerate(STRUCTURES, start=1):
        draw.rectangle((left, 4, left + 10, 12), fill=tuple(int(c) for c in CLASS_COLORS[label]))
        draw.text((left + 14, 2), name, fill=(0, 0, 0))
        left += 14 + int(draw.textlength(name)) + 12
    draw.text((left, 2), "outlines; " + ("each slice: truth | prediction" if with_truth else "zN = slice N"),
              fill=(0, 0, 0))
    return np.asarray(strip)


def montage(image: np.ndarray, mask: np.ndarray, truth: np.ndarray | None = None, columns: int = 6) -> np.ndarray:
    """RGB picture of every slice of an ``H x W x Z`` volume with the outlines of ``mask``'s classes, numbered
    ``zN`` (N = index of the slice in the file, base first in ACDC), ``columns`` to a row, a colour legend below;
    with ``truth`` each slice shows the truth's outlines left of the prediction's. Slices smaller than
    :data:`MONTAGE_TILE` are magnified (nearest neighbour)."""
    magnify = max(1, -(-MONTAGE_TILE // max(image.shape[:2])))
    if magnify > 1:
        image, mask = image.repeat(magnify, 0).repeat(magnify, 1), mask.repeat(magnify, 0).repeat(magnify, 1)
        truth = None if truth is None else truth.repeat(magnify, 0).repeat(magnify, 1)
    width = 1 + (magnify > 2)
    slices = image.shape[2]
    tiles = []
    for z in range(slices):
        tile = contour_overlay(image[:, :, z], mask[:, :, z], width)
        if truth is not None:
            gap = np.full((tile.shape[0], 2, 3), 255, np.uint8)
            tile = np.concatenate([_labelled(contour_overlay(image[:, :, z], truth[:, :, z], width), f"z{z} truth"),
                                   gap, _labelled(tile, "prediction")], axis=1)
        tiles.append(_labelled(tile, f"z{z}") if truth is None else tile)
    height, tile_width = tiles[0].shape[:2]
    columns = max(1, min(columns if truth is None else max(1, columns // 2), slices))
    rows = -(-slices // columns)
    gap = 2
    canvas = np.full((rows * (height + gap) - gap, columns * (tile_width + gap) - gap, 3), 255, np.uint8)
    for z, tile in enumerate(tiles):
        top, left = (z // columns) * (height + gap), (z % columns) * (tile_width + gap)
        canvas[top : top + height, left : left + tile_width] = tile
    legend = _legend_strip(max(canvas.shape[1], 360), truth is not None)
    if legend.shape[1] > canvas.shape[1]:
        canvas = np.pad(canvas, ((0, 0), (0, legend.shape[1] - canvas.shape[1]), (0, 0)), constant_values=255)
    return np.concatenate([canvas, legend], axis=0)
