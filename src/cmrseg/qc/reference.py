"""A second opinion for quality control: an independently trained model (``--qc-reference``: a run folder, an export
zip or a shipped model) predicts the same volume, and the Dice of the prediction with the reference's segmentation,
per structure, becomes the signals ``reference_dice``, ``reference_dice_min`` and ``reference_dice_<structure>``
(:func:`cmrseg.qc.signals.volume_signals`).

Why: two networks trained apart rarely fail in the same place, so where they disagree one of them is wrong; the
flip views of one network share its blind spots. On the native pool #27 names the estimate's mean absolute error fell
from 0.060 to 0.029 with it (BENCHMARKS.md), at the cost of a second prediction (flip TTA, the reference's own plan
and clean-up): 1.63x prediction instead of 1.12x.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg.errors import CmrsegError


@dataclass
class Reference:
    """A loaded reference model: its predictor, resolved settings (clean-up, class weights), the spacing it predicts
    at and the run folder or zip it was loaded from (:func:`resolve_reference`; for the output records)."""

    predictor: Any
    settings: Any
    target: tuple[float, ...] | None
    path: Path

    def mask(self, volume: Any) -> np.ndarray:
        """The reference's label volume of ``volume``, predicted as the reference's own run would."""
        from cmrseg.inference.volume_prediction import volume_mask, volume_probabilities

        probs = volume_probabilities(self.predictor, volume, self.target)
        return volume_mask(probs, bool(self.settings.postprocess), self.settings.class_weights)

    def require(self, volumes: Sequence[tuple[str | None, Path]]) -> None:
        """Refuse, before anything is predicted, volumes (``(phase, file)``) the reference cannot read."""
        from cmrseg.inference.volume_prediction import require_conditions

        require_conditions(self.predictor, volumes)


def refuse_for_slices(where: str | Path, qc_reference: str | Path | None) -> None:
    """A QC reference given for PNG slices (at ``where``) is a one-line error: it checks NIfTI volumes only."""
    if qc_reference is not None:
        raise CmrsegError(f"{where}: a QC reference model checks NIfTI volumes, not PNG slices", key="qc_reference")


def resolve_reference(text: str | Path) -> Path:
    """``--qc-reference``'s model: an existing run folder or export zip, or else the name of a shipped model; anything
    else is a one-line error that lists the shipped names."""
    from cmrseg.pretrained_models import catalog, pretrained_path

    path = Path(text)
    if path.exists():
        if path.suffix.lower() == ".onnx":
            raise CmrsegError(f"--qc-reference {text}: an ONNX graph cannot be a reference; give its run folder or zip",
                              key="qc_reference")
        return path
    if str(text) in catalog():
        return pretrained_path(str(text))
    raise CmrsegError(f"--qc-reference {text}: no such run folder or export zip, nor a shipped model (shipped: "
                      f"{', '.join(sorted(catalog())) or 'none'})", key="qc_reference")


def load_reference(text: str | Path | None, settings: Any = None) -> Reference | None:
    """The reference model ``text`` (:func:`resolve_reference`) with flip TTA (``settings`` override, e.g. the
    checkpoint); None without one. A reference that reads the other phase is refused: it would need pairs the
    prediction may not have."""
    from cmrseg.inference.loading import load_run
    from cmrseg.inference.settings import PredictSettings
    from cmrseg.inference.volume_prediction import training_spacing

    if text is None:
        return None
    path = resolve_reference(text)
    predictor, resolved = load_run(path, settings or PredictSettings(tta=True))
    if predictor.spec.other_phase:
        raise CmrsegError(f"--qc-reference {text}: this model reads the other cardiac phase; choose a reference that "
                          "reads one volume at a time", key="qc_reference")
    return Reference(predictor, resolved, training_spacing(path), path)
