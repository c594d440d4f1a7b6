"""Scores of predicted masks: :mod:`~cmrseg.metrics.slices` (per-image Dice and HD95, the coursework's
convention) and :mod:`~cmrseg.metrics.volumes` (3D Dice and HD95 per volume, slice-position summaries)."""

from cmrseg.metrics.slices import aggregate, batch_dice, diagonal, dice_score, hd95_score, image_metrics, summarize
from cmrseg.metrics.volumes import evaluate_volume, slice_dice, summarize_volumes, volume_metrics

__all__ = [
    "aggregate", "batch_dice", "diagonal", "dice_score", "evaluate_volume", "hd95_score", "image_metrics", "slice_dice",
    "summarize", "summarize_volumes", "volume_metrics",
]
