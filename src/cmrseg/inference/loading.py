"""Loading a trained model as a predictor: a run folder, an export zip or an ``.onnx`` export, run by torch or
onnxruntime (:mod:`cmrseg.inference.onnx_engine`)."""

from __future__ import annotations

from pathlib import Path

from cmrseg import runs
from cmrseg.errors import CmrsegError
from cmrseg.inference.onnx_engine import load_onnx, onnx_predictor_from_torch
from cmrseg.inference.predictor import ModelPredictor
from cmrseg.inference.settings import PredictSettings
from cmrseg.utils import resolve_device


def load_run(run_dir: str | Path, settings: PredictSettings | None = None) -> tuple[ModelPredictor, PredictSettings]:
    """Load a trained run (a folder, an export zip, or with engine ``onnxruntime`` an exported ``.onnx``;
    an ensemble run is one too) as a predictor, plus ``settings`` resolved against the run's config
    (:meth:`PredictSettings.resolve`), which the predictor already applies (TTA, zooms).

    With ``settings.engine`` ``onnxruntime`` the network is exported to ONNX (in memory) and run by
    onnxruntime on the CPU behind the same predictor: same normalisation, TTA and batching."""
    settings = settings or PredictSettings()
    if Path(run_dir).suffix.lower() == ".onnx":
        if settings.engine != "onnxruntime":
            raise CmrsegError(f"{run_dir}: an ONNX graph runs with the onnxruntime engine (torch needs the run folder or zip)",
                              key="engine")
        return load_onnx(run_dir, settings)
    run_dir = runs.require_run_dir(run_dir)
    config = runs.read_run_config(run_dir)
    resolved = settings.resolve(config)
    onnx = resolved.engine == "onnxruntime"
    device = resolve_device("cpu" if onnx else resolved.device)
    model = runs.load_model_from_checkpoint(runs.checkpoint_path(run_dir, resolved.checkpoint), config.model_info, device)
    predictor = ModelPredictor(model, runs.read_input_spec(run_dir, config), device, tta=bool(resolved.tta),
                               tta_scales=resolved.tta_scales or (1.0,), precision=resolved.precision,
                               source=str(runs.checkpoint_path(run_dir, resolved.checkpoint)))
    if onnx:
        predictor = onnx_predictor_from_torch(predictor, weights=runs.checkpoint_path(run_dir, resolved.checkpoint),
                                              model_info=config.model_info)
    return predictor, resolved
