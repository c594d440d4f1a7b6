"""The ONNX graph and its metadata.

The graph (opset :data:`ONNX_OPSET`) maps the input spec's ``N x C x H x W`` float32 channels to
``N x 4 x H x W`` scores whose softmax is the class probabilities; batch, height and width are
dynamic from :func:`minimum_size` up. An ensemble is one graph: every member with its own
normalisation and the weighted soft vote (its scores are log-probabilities). The model metadata
(``metadata_props``) holds the input spec (``input_spec``: channels, normalisation and plan, whose spacing volumes are
resampled to; exports made before it hold ``normalization`` and ``plan`` instead, still read), labels, prediction
defaults, the training data's ``data.json`` and the model card.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from cmrseg.constants import CLASS_NAMES
from cmrseg.data.input_spec import InputSpec
from cmrseg.data.normalization import Normalization
from cmrseg.errors import CmrsegError
from cmrseg.formats.version import FORMAT, FORMAT_VERSION, check_format_version
from cmrseg.io.atomic import json_text
from cmrseg.planning import Plan
from cmrseg.utils import quiet_logger


ONNX_OPSET = 18

INSTALL_HINT = "pip install 'cmrseg[onnx]'"

META_PREFIX = "cmrseg_"


def require(module: str) -> ModuleType:
    """Import an optional ONNX dependency, or fail with one line naming the pip command."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CmrsegError(f"{module} is not installed; install the ONNX extras with: {INSTALL_HINT}") from None


def onnx_metadata(spec: InputSpec, settings: dict[str, Any], card: dict[str, Any] | None = None,
                  training_data: dict[str, Any] | None = None) -> dict[str, str]:
    """The ``metadata_props`` of an exported graph: all values are strings (JSON where structured); ``input_spec`` is
    the run's input spec (:meth:`InputSpec.to_dict`: channels, normalisation, plan), ``training_data`` its
    ``data.json``."""
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "input_spec": json.dumps(spec.to_dict()),
                "labels": json.dumps(list(CLASS_NAMES)), "prediction": json.dumps(settings),
                "input": f"image: N x {spec.network_channels} x H x W float32, the channels of the input spec",
                "output": "scores: N x C x H x W; softmax over C gives the class probabilities"}
    if card is not None:
        metadata["model_card"] = json_text(card, indent=None)
    if training_data is not None:
        metadata["training_data"] = json.dumps(training_data)
    return {META_PREFIX + key: value for key, value in metadata.items()}


def minimum_size(model: nn.Module) -> int:
    """Smallest height and width the exported graph takes: every padded input must exceed its padding."""
    from cmrseg.models.registry import SegmentationNet

    nets = [m for m in model.modules() if isinstance(m, SegmentationNet)]
    return max([math.ceil(net.size_divisor / net.input_scale) for net in nets] + [1])


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress logs and deprecation warnings (about torch internals, not the model)."""
    with quiet_logger("torch.onnx"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def onnx_bytes(model: nn.Module, metadata: dict[str, str], channels: int = 1) -> bytes:
    """``model`` exported by ``torch.onnx.export`` (dynamo) with dynamic batch, height and width, plus ``metadata``;
    its input has ``channels`` slices (more than 1 for a 2.5-D model)."""
    onnx = require("onnx")
    proto = onnx.load_from_string(export_graph(model, channels))
    metadata = {**metadata, f"{META_PREFIX}min_size": str(minimum_size(model)), f"{META_PREFIX}opset": str(ONNX_OPSET)}
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = "cmrseg segmentation network; see the cmrseg_* metadata for normalisation and labels"
    return proto.SerializeToString()


def export_graph(model: nn.Module, channels: int = 1) -> bytes:
    """The serialised ONNX graph of ``model`` without metadata (:func:`onnx_bytes`): the slow part of an export
    (tracing and decomposing the network takes seconds to a minute on a CPU)."""
    require("onnx")
    require("onnxscript")
    min_size = minimum_size(model)
    side = max(64, 2 * min_size)
    example = torch.zeros(2, channels, side, side)
    dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("height", min=min_size),
            3: torch.export.Dim("width", min=min_size)}
    model = model.eval()
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=ONNX_OPSET, input_names=["image"],
                                    output_names=["scores"], dynamic_shapes=(dims,),
                                    verbose=False)
    return program.model_proto.SerializeToString()


def read_metadata(path: str | Path) -> dict[str, str]:
    """The cmrseg ``metadata_props`` of an ONNX file (prefix dropped), checked; one-line errors otherwise."""
    onnx = require("onnx")
    path = Path(path)
    if not path.is_file():
        raise CmrsegError(f"{path}: ONNX file not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError, ValueError, OSError... for a broken file
        raise CmrsegError(f"{path}: not a readable ONNX file ({type(err).__name__})") from None
    props = {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}
    if props.get("format") != "cmrseg-model" or not {"input_spec", "normalization"} & set(props):
        raise CmrsegError(f"{path}: not a cmrseg ONNX export (no cmrseg metadata); export one with "
                          "'cmrseg export --format onnx'")
    raw = props.get("format_version", "")
    check_format_version(int(raw) if raw.isdigit() else raw, str(path))
    return props


def broken_metadata(path: str | Path, err: Exception) -> CmrsegError:
    return CmrsegError(f"{path}: broken cmrseg metadata ({type(err).__name__}: {err})")


def prediction_metadata(path: str | Path, props: dict[str, str] | None = None) -> dict[str, Any]:
    """The export's ``prediction`` metadata (the run's TTA, clean-up and ``context_slices``), checked."""
    props = read_metadata(path) if props is None else props
    try:
        defaults = json.loads(props.get("prediction") or "{}")
    except ValueError as err:
        raise broken_metadata(path, err) from None
    if not isinstance(defaults, dict):
        raise broken_metadata(path, TypeError("'prediction' is not an object"))
    return defaults


def training_data(path: str | Path) -> dict[str, Any]:
    """The run's ``data.json`` (training spacing and counts) as recorded in an ``.onnx`` export; empty when absent."""
    try:
        data = json.loads(read_metadata(path).get("training_data") or "{}")
    except ValueError as err:
        raise broken_metadata(path, err) from None
    return data if isinstance(data, dict) else {}


def spec_from_metadata(path: str | Path, props: dict[str, str]) -> InputSpec:
    """The export's input spec: its ``input_spec`` key, or for an export written before the spec its loose keys
    (``normalization``, the ``context_slices``, ``other_phase`` and ``conditions`` of ``prediction``, ``plan``)."""
    from pydantic import ValidationError

    if "input_spec" in props:
        try:
            data = json.loads(props["input_spec"])
        except ValueError as err:
            raise broken_metadata(path, err) from None
        return InputSpec.from_dict(data if isinstance(data, dict) else {}, source=f"{path} (metadata input_spec)")
    defaults = prediction_metadata(path, props)
    try:
        plan = json.loads(props["plan"]) if props.get("plan") else None
        return InputSpec.checked(int(defaults.get("context_slices", 0)), defaults.get("other_phase", False),
                                 defaults.get("conditions", []),
                                 Normalization.from_dict(json.loads(props["normalization"])),
                                 None if plan is None else Plan.model_validate(plan))
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as err:
        raise broken_metadata(path, err) from None


def read_plan(path: str | Path) -> Plan | None:
    """The run's plan as recorded in an ``.onnx`` export (None for an export of a run trained before plans)."""
    return spec_from_metadata(path, read_metadata(path)).plan
