"""How a run predicts: one settings object carried from the command line or a config to every predictor."""

from __future__ import annotations

from dataclasses import dataclass, replace

from cmrseg.config import ExperimentConfig, checked_tta_scales


@dataclass(frozen=True)
class PredictSettings:
    """Prediction options; a None field takes the run config's value (see :meth:`resolve`).

    ``tta``: flip test-time augmentation; ``tta_scales``: its zooms (given without ``tta`` they turn it
    on); ``postprocess``: largest-component clean-up; ``class_weights``: per-class factors on the
    probabilities before the argmax (background, RV, Myo, LV); ``device``: ``auto``, ``cpu`` or
    ``cuda[:N]``; ``checkpoint``: ``best``, ``last`` or a file name in the run folder.
    """

    tta: bool | None = None
    tta_scales: tuple[float, ...] | None = None
    postprocess: bool | None = None
    class_weights: list[float] | None = None
    device: str = "auto"
    checkpoint: str = "best"

    def __post_init__(self) -> None:
        if self.tta_scales is not None:
            object.__setattr__(self, "tta_scales", tuple(float(scale) for scale in self.tta_scales))

    def resolve(self, config: ExperimentConfig) -> PredictSettings:
        """These settings with every None field filled from the run's ``config``; without TTA the only zoom is 1."""
        tta = (config.tta or self.tta_scales is not None) if self.tta is None else self.tta
        scales = config.tta_scales if self.tta_scales is None else list(self.tta_scales)
        return replace(
            self, tta=tta, tta_scales=tuple(checked_tta_scales(scales)) if tta else (1.0,),
            postprocess=config.postprocess.largest_component if self.postprocess is None else self.postprocess,
            class_weights=config.postprocess.class_weights if self.class_weights is None else self.class_weights,
        )
