"""Export workflow: a run folder (or an export zip) written as one zip with a model card
(:mod:`cmrseg.formats.bundle`) or as an ONNX graph with its metadata (:mod:`cmrseg.formats.onnx`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cmrseg import runs
from cmrseg.config import ExperimentConfig
from cmrseg.errors import CmrsegError
from cmrseg.formats.bundle import _write_zip
from cmrseg.formats.card import model_card
from cmrseg.formats.onnx import onnx_bytes, onnx_metadata
from cmrseg.io.atomic import atomic_path
from cmrseg.io.outputs import check_output_file


def export_run(run_dir: str | Path, out: str | Path, fmt: str | None = None, checkpoint: str = "best",
               notes: Mapping[str, Any] | None = None, half: bool = False) -> Path:
    """Write ``run_dir`` (a run folder or an export zip) to ``out`` as ``fmt`` ``zip`` or ``onnx`` (default:
    onnx for an ``out`` ending in ``.onnx``, else zip), atomically.

    ``notes`` add to the model card (:data:`cmrseg.formats.card.CARD_NOTES`: what a shipped model's card says beyond
    the run's files; an export of an export keeps them); ``half`` stores a zip's weights in float16 (loaded as float32).

    ``out`` is checked first (:func:`cmrseg.io.outputs.check_output_file`): not a folder, not inside the run."""
    fmt = fmt or ("onnx" if str(out).lower().endswith(".onnx") else "zip")
    if fmt not in ("zip", "onnx"):
        raise CmrsegError(f"--format '{fmt}': expected zip or onnx")
    out = check_output_file(out, inputs=runs.run_inputs(run_dir))
    source = runs.require_run_dir(run_dir)
    from cmrseg.inference import PredictSettings, load_run

    predictor, _ = load_run(source, PredictSettings(device="cpu", checkpoint=checkpoint))
    config = runs.read_run_config(source)
    card = model_card(source, predictor.model, checkpoint, notes)
    with atomic_path(out) as tmp:
        if fmt == "onnx":
            metadata = onnx_metadata(predictor.spec, prediction_defaults(config), card, runs.read_training_data(source))
            tmp.write_bytes(onnx_bytes(predictor.model, metadata, predictor.spec.network_channels))
        else:
            _write_zip(tmp, source, checkpoint, prediction_defaults(config), card, half)
    return out


def prediction_defaults(config: ExperimentConfig) -> dict[str, Any]:
    """The run's own TTA and clean-up settings, which an export's reader resolves its options against (what the
    network reads is the input spec's)."""
    return {"tta": config.tta, "tta_scales": list(config.tta_scales),
            "postprocess": config.postprocess.largest_component, "class_weights": config.postprocess.class_weights}


