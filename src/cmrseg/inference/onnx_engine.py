"""Prediction with onnxruntime: an ONNX graph behind :class:`~cmrseg.inference.ModelPredictor`.

:class:`OnnxNetwork` makes an onnxruntime session look like the torch network, so the predictor's
flip and zoom TTA, normalisation and batching run unchanged around it (in torch on the CPU) and
post-processing, submissions and every output path stay those of the torch engine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cmrseg.config import ModelInfo
from cmrseg.errors import CmrsegError
from cmrseg.formats.onnx import (broken_metadata, minimum_size, onnx_bytes, onnx_metadata, prediction_metadata,
                                 read_metadata, require, spec_from_metadata)
from cmrseg.inference.predictor import ModelPredictor
from cmrseg.inference.settings import PredictSettings


class OnnxNetwork(nn.Module):
    """An onnxruntime session called like a network: ``N x 1 x H x W`` float32 in, scores out."""

    def __init__(self, session: Any, min_size: int = 1) -> None:
        super().__init__()
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.min_size = min_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if min(height, width) < self.min_size:
            raise CmrsegError(f"a {height}x{width} image is smaller than the exported graph takes "
                              f"({self.min_size}x{self.min_size} at least)")
        scores = self.session.run(None, {self.input_name: x.detach().cpu().contiguous().numpy()})[0]
        return torch.from_numpy(scores)


def make_session(source: bytes | str | Path, threads: int | None = None) -> Any:
    """A CPU onnxruntime session on ``threads`` intra-op threads (default: torch's thread count)."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    model = source if isinstance(source, bytes) else str(source)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


GRAPH_FILE = "graph.onnx"
GRAPH_CACHE = "onnx"
"""Folder of :func:`cmrseg.formats.cache.cache_root` holding the graphs exported for ``--engine onnxruntime``."""


def onnx_predictor_from_torch(predictor: ModelPredictor, threads: int | None = None,
                              weights: Path | None = None, model_info: ModelInfo | None = None) -> ModelPredictor:
    """``predictor`` with its network exported to ONNX and run by onnxruntime on the CPU. With ``weights`` and
    ``model_info`` (the checkpoint and architecture it was loaded from) the graph is cached (:func:`cached_graph`),
    else exported in memory."""
    def export() -> bytes:
        return onnx_bytes(predictor.model, onnx_metadata(predictor.spec, {}), predictor.spec.network_channels)

    data = (export() if weights is None or model_info is None
            else cached_graph(predictor, weights, model_info.model_dump_json(), export))
    network = OnnxNetwork(make_session(data, threads), minimum_size(predictor.model))
    return dataclasses.replace(predictor, model=network, device=torch.device("cpu"))


def cached_graph(predictor: ModelPredictor, weights: Path, architecture: str, export: Callable[[], bytes]) -> bytes:
    """The ONNX graph of ``predictor`` loaded from the checkpoint ``weights`` into ``architecture`` (its model_info
    as JSON), exported once and kept in ``$CMRSEG_CACHE/onnx/<key>`` (the key hashes the weights, architecture,
    normalisation, input channels, opset and the torch and cmrseg versions); verified like an unpacked export
    before every use and exported again when it differs."""
    from cmrseg.constants import VERSION
    from cmrseg.formats.cache import cache_changes, fill_cache, writable_cache_root
    from cmrseg.formats.onnx import ONNX_OPSET

    key = hashlib.sha256(weights.read_bytes())
    key.update(json.dumps([architecture, predictor.spec.normalization.to_dict(), predictor.spec.network_channels, ONNX_OPSET,
                           torch.__version__, VERSION], default=str).encode())
    folder = writable_cache_root() / GRAPH_CACHE
    folder.mkdir(exist_ok=True)
    target = folder / key.hexdigest()[:20]
    def write(tmp: Path) -> list[str]:
        (tmp / GRAPH_FILE).write_bytes(export())
        return [GRAPH_FILE]

    if cache_changes(target, [GRAPH_FILE]) is not None:
        fill_cache(target, write)
    return (target / GRAPH_FILE).read_bytes()


def load_onnx(path: str | Path, settings: PredictSettings | None = None,
              threads: int | None = None) -> tuple[ModelPredictor, PredictSettings]:
    """A predictor and ``settings`` resolved against a cmrseg ``.onnx`` export's metadata (input spec,
    TTA and clean-up defaults), as :func:`cmrseg.inference.load_run` returns them for a run folder."""
    props = read_metadata(path)
    defaults = prediction_metadata(path, props)
    spec = spec_from_metadata(path, props)
    try:
        min_size = int(props.get("min_size", "1"))
        resolved = (settings or PredictSettings(engine="onnxruntime")).with_defaults(
            bool(defaults.get("tta", False)), defaults.get("tta_scales") or [1.0], bool(defaults.get("postprocess", False)),
            defaults.get("class_weights"))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise broken_metadata(path, err) from None
    predictor = ModelPredictor(OnnxNetwork(make_session(path, threads), min_size), spec, torch.device("cpu"),
                               tta=bool(resolved.tta), tta_scales=resolved.tta_scales or (1.0,), source=str(path))
    return predictor, resolved


