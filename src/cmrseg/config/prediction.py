"""The prediction part of a config: how a run predicts by default (test-time augmentation, zooms, class weights
and clean-up); ``evaluate`` and ``predict`` may change it per call without touching the run."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, field_validator

from cmrseg.config.base import Strict, check_class_weights
from cmrseg.errors import CmrsegError


class PostprocessInfo(Strict):
    """How probabilities become a mask: weighted argmax, then optional largest-component clean-up."""

    largest_component: bool = False
    class_weights: list[float] | None = Field(
        None,
        description="one factor per class (background, RV, Myo, LV) applied to the probabilities before the argmax; "
        "above 1 a structure wins pixels it is unsure of, which raises Dice when the model under-segments it",
    )

    @field_validator("class_weights")
    @classmethod
    def _one_positive_weight_per_class(cls, weights: list[float] | None) -> list[float] | None:
        return check_class_weights(weights)


def check_tta_scales(scales: Sequence[float]) -> list[float]:
    """The zooms of test-time augmentation, or ValueError: at least one, each in [0.5, 2]."""
    if not scales or any(not 0.5 <= scale <= 2.0 for scale in scales):
        raise ValueError(f"tta_scales must be one or more zoom factors in [0.5, 2], got {list(scales)}")
    return list(scales)


def checked_tta_scales(scales: Sequence[float]) -> list[float]:
    """:func:`check_tta_scales` for zooms given outside a config file (CLI, library): a one-line CmrsegError."""
    try:
        return check_tta_scales(scales)
    except ValueError as error:
        raise CmrsegError(str(error)) from None


class PredictionConfig(Strict):
    """How a run predicts by default: flip and zoom TTA, class weights and largest-component clean-up. They stay
    opt-in (configs/best.json turns them on): they change what an existing run's ``evaluate`` reports."""

    tta: bool = False
    tta_scales: list[float] = Field(
        default_factory=lambda: [1.0], min_length=1,
        description="zoom factors of test-time augmentation (with tta): each zoomed image is also flipped, "
                    "its softmax zoomed back, and all are averaged",
    )
    postprocess: PostprocessInfo = Field(default_factory=PostprocessInfo)

    @field_validator("tta_scales")
    @classmethod
    def _moderate_zooms(cls, scales: list[float]) -> list[float]:
        return check_tta_scales(scales)
