"""Export workflow: a run folder (or an export zip) written as one zip with a model card
(:mod:`cmrseg.formats.bundle`, :mod:`cmrseg.formats.card`) or as an ONNX graph with its metadata
(:mod:`cmrseg.formats.onnx`). The run is read through :mod:`cmrseg.runs` and loaded by :mod:`cmrseg.inference`;
the formats below only write what they are handed."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cmrseg import runs
from cmrseg.config import ExperimentConfig
from cmrseg.errors import CmrsegError
from cmrseg.formats.bundle import write_bundle
from cmrseg.formats.card import CARD_JSON, CARD_MARKDOWN, card_markdown, card_notes, model_card, weights_time
from cmrseg.formats.onnx import onnx_bytes, onnx_metadata
from cmrseg.inference import ModelPredictor, PredictSettings, load_run
from cmrseg.io.atomic import atomic_path, json_text
from cmrseg.io.outputs import check_output_file

EXPORTED_FILES = (runs.DATA_FILE, runs.PLAN_FILE, runs.HISTORY_FILE, runs.QC_FILE)
"""Run files a zip carries when the run has them, besides its config, normalisation and weights."""


def export_run(run_dir: str | Path, out: str | Path, fmt: str | None = None, checkpoint: str = "best",
               notes: Mapping[str, Any] | None = None, half: bool = False) -> Path:
    """Write ``run_dir`` (a run folder or an export zip) to ``out`` as ``fmt`` ``zip`` or ``onnx`` (default:
    onnx for an ``out`` ending in ``.onnx``, else zip), atomically.

    ``notes`` add to the model card (:data:`cmrseg.formats.card.CARD_NOTES`: what a shipped model's card says beyond
    the run's files; an export of an export keeps them); ``half`` stores a zip's weights in float16 (loaded as float32).

    ``out`` is checked first (:func:`cmrseg.io.outputs.check_output_file`): not a folder, not inside the run."""
    fmt = fmt or ("onnx" if str(out).lower().endswith(".onnx") else "zip")
    if fmt not in ("zip", "onnx"):
        raise CmrsegError(f"export format '{fmt}': expected zip or onnx")
    out = check_output_file(out, inputs=runs.run_inputs(run_dir))
    source = runs.require_run_dir(run_dir)
    predictor, _ = load_run(source, PredictSettings(device="cpu", checkpoint=checkpoint))
    config = runs.read_run_config(source)
    card = run_card(source, predictor, checkpoint, notes)
    with atomic_path(out) as tmp:
        if fmt == "onnx":
            metadata = onnx_metadata(predictor.spec, prediction_defaults(config), card, runs.read_training_data(source))
            tmp.write_bytes(onnx_bytes(predictor.model, metadata, predictor.spec.network_channels))
        else:
            files = {**runs.export_files(source, checkpoint, EXPORTED_FILES, half),
                     CARD_JSON: (json_text(card) + "\n").encode(), CARD_MARKDOWN: card_markdown(card).encode()}
            write_bundle(tmp, files, prediction_defaults(config))
    return out


def run_card(run_dir: Path, predictor: ModelPredictor, checkpoint: str = "best",
             notes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The model card of the run ``run_dir`` whose ``checkpoint`` ``predictor`` has loaded, with ``notes``."""
    from cmrseg.models.registry import count_parameters

    config = runs.read_run_config(run_dir)
    weights = runs.checkpoint_path(run_dir, checkpoint)
    recorded = runs.read_training_data(run_dir)
    volumes = recorded is not None and recorded.get("kind") == "volumes"  # a volume folder's file count is not its images
    return model_card(config, runs.read_normalization(run_dir).to_dict(), count_parameters(predictor.model),
                      runs.read_history(run_dir), recorded,
                      None if volumes else _training_images(config.dataset_info.train_data_path),
                      weights_time(run_dir, weights, weights.name == runs.BEST_CHECKPOINT), card_notes(run_dir, notes))


def _training_images(path: str | None) -> int | None:
    """How many PNG images the training folder holds now (None when it is not there or holds none)."""
    from cmrseg.data.readers.png import list_images

    if not path:
        return None
    with contextlib.suppress(CmrsegError, OSError):
        return len(list_images(path))
    return None


def prediction_defaults(config: ExperimentConfig) -> dict[str, Any]:
    """The run's own TTA and clean-up settings, which an export's reader resolves its options against (what the
    network reads is the input spec's)."""
    return {"tta": config.tta, "tta_scales": list(config.tta_scales),
            "postprocess": config.postprocess.largest_component, "class_weights": config.postprocess.class_weights}


