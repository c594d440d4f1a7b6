"""Prediction from a run folder: :mod:`~cmrseg.inference.settings` (what to predict with),
:mod:`~cmrseg.inference.tta` (flips and warps), :mod:`~cmrseg.inference.postprocess` (masks and
clean-up) and :mod:`~cmrseg.inference.predictor` (predictors, ``load_run``, ``predict_folder``)."""

from cmrseg.inference.postprocess import largest_component, to_mask, to_masks
from cmrseg.inference.predictor import ModelPredictor, Predictor, images_per_second, load_run, predict_folder, predict_masks
from cmrseg.inference.settings import PredictSettings
from cmrseg.inference.tta import FLIPS, IDENTITY, Warp, warp_average, zoom

__all__ = [
    "FLIPS", "IDENTITY", "ModelPredictor", "PredictSettings", "Predictor", "Warp", "images_per_second", "largest_component",
    "load_run", "predict_folder", "predict_masks", "to_mask", "to_masks", "warp_average", "zoom",
]
