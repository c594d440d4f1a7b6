"""How a run predicts: one settings object carried from the command line or a config to every predictor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from cmrseg.config import PRECISIONS, ExperimentConfig, checked_tta_scales
from cmrseg.errors import CmrsegError

ENGINES = ("torch", "onnxruntime")
"""What runs the network: torch, or the network exported to ONNX and run by onnxruntime on the CPU."""


@dataclass(frozen=True)
class PredictSettings:
    """Prediction options; a None field takes the run config's value (see :meth:`resolve`).

    ``tta``: flip test-time augmentation; ``tta_scales``: its zooms (given without ``tta`` they turn it
    on); ``postprocess``: largest-component clean-up; ``class_weights``: per-class factors on the
    probabilities before the argmax (background, RV, Myo, LV); ``device``: ``auto``, ``cpu`` or
    ``cuda[:N]``; ``checkpoint``: ``best``, ``last`` or a file name in the run folder; ``engine``: one of
    :data:`ENGINES` (``onnxruntime`` runs on the CPU whatever ``device`` says); ``precision``: one of
    :data:`PRECISIONS` (bfloat16 with the torch engine only).
    """

    tta: bool | None = None
    tta_scales: tuple[float, ...] | None = None
    postprocess: bool | None = None
    class_weights: list[float] | None = None
    device: str = "auto"
    checkpoint: str = "best"
    engine: str = "torch"
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise CmrsegError(f"engine '{self.engine}': expected one of {', '.join(ENGINES)}", key="engine")
        if self.precision not in PRECISIONS:
            raise CmrsegError(f"precision '{self.precision}': expected one of {', '.join(PRECISIONS)}", key="precision")
        if self.precision != "float32" and self.engine != "torch":
            raise CmrsegError(f"precision {self.precision} runs with the torch engine; onnxruntime computes in float32",
                              key="precision")
        if self.tta_scales is not None:
            object.__setattr__(self, "tta_scales", tuple(float(scale) for scale in self.tta_scales))

    def resolve(self, config: ExperimentConfig) -> PredictSettings:
        """These settings with every None field filled from the run's ``config``; without TTA the only zoom is 1."""
        return self.with_defaults(config.tta, config.tta_scales, config.postprocess.largest_component,
                                  config.postprocess.class_weights)

    def summary(self) -> dict[str, object]:
        """The TTA and clean-up these (resolved) settings predict with, as a scores summary records them."""
        return {"tta": self.tta, "tta_scales": list(self.tta_scales or (1.0,)), "postprocess": self.postprocess,
                "class_weights": self.class_weights}

    def with_defaults(self, tta: bool, tta_scales: Sequence[float], postprocess: bool,
                      class_weights: list[float] | None) -> PredictSettings:
        """These settings with every None field filled from the given defaults (a run config's, or an ONNX
        export's metadata); zooms given without ``tta`` turn it on, and without TTA the only zoom is 1."""
        use_tta = (tta or self.tta_scales is not None) if self.tta is None else self.tta
        scales = list(tta_scales) if self.tta_scales is None else list(self.tta_scales)
        return replace(
            self, tta=use_tta, tta_scales=tuple(checked_tta_scales(scales)) if use_tta else (1.0,),
            postprocess=postprocess if self.postprocess is None else self.postprocess,
            class_weights=class_weights if self.class_weights is None else self.class_weights,
        )
