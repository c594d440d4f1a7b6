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
from cmrseg.utils import atomic_path  # noqa: E402

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
