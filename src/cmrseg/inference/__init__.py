"""Prediction from a run folder: :mod:`~cmrseg.inference.settings` (what to predict with),
:mod:`~cmrseg.inference.tta` (flips and warps), :mod:`~cmrseg.inference.postprocess` (masks and
clean-up), :mod:`~cmrseg.inference.predictor` (predictors), :mod:`~cmrseg.inference.loading` (``load_run``: a run,
zip or ``.onnx`` as a predictor), :mod:`~cmrseg.inference.volume_prediction` (whole volumes) and
:mod:`~cmrseg.inference.folders` (``predict_folder``: a folder into an output folder).

Modules inside this package and those it builds on import its submodules, not this package, so that importing
the package (which loads them all) closes no import cycle (``tests/test_architecture.py`` checks it)."""

from cmrseg.inference.postprocess import largest_component, to_mask, to_masks
from cmrseg.inference.folders import predict_folder
from cmrseg.inference.loading import load_run
from cmrseg.inference.predictor import ModelPredictor, Predictor, images_per_second, predict_masks
from cmrseg.inference.settings import PredictSettings
from cmrseg.inference.tta import FLIPS, IDENTITY, Warp, warp_average, zoom

__all__ = [
    "FLIPS", "IDENTITY", "ModelPredictor", "PredictSettings", "Predictor", "Warp", "images_per_second", "largest_component",
    "load_run", "predict_folder", "predict_masks", "to_mask", "to_masks", "warp_average", "zoom",
]
