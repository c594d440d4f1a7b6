"""Loading starting weights from a local file or a URL (cached by torch.hub)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from cmrseg.errors import CmrsegError


def _fetch(source: str) -> Path:
    """Return a local path for ``source``: the file itself, or the torch.hub cache copy of a URL."""
    if "://" not in source:
        path = Path(source).expanduser()
        if not path.is_file():
            raise CmrsegError(f"{path}: pretrained weights file not found")
        return path
    filename = os.path.basename(source.split("?")[0])
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return cached
    if os.environ.get("CMRSEG_OFFLINE") or os.environ.get("HF_HUB_OFFLINE"):
        raise CmrsegError(f"{source}: not in the torch.hub cache ({cached}) and offline mode is on")
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        import socket

        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)
        try:
            torch.hub.download_url_to_file(source, str(cached), progress=True)
        finally:
            socket.setdefaulttimeout(previous)
    except Exception as err:  # network errors come in many types
        raise CmrsegError(f"{source}: download failed and no cached copy at {cached} ({type(err).__name__}: {err})") from None
    return cached


def extract_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or a cmrseg/common checkpoint that holds one under a known key."""
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state"):
            if isinstance(obj.get(key), dict):
                return obj[key]
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise CmrsegError(f"{source}: not a state dict or checkpoint")


def load_pretrained(model: nn.Module, source: str) -> None:
    """Load weights into ``model``; keys must match by name and shape, or a one-line error names the first misfit."""
    path = _fetch(source)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CmrsegError(f"{path}: cannot read weights ({type(err).__name__})") from None
    state = extract_state_dict(obj, str(path))
    check_state_dict(model, state, str(path))
    model.load_state_dict(state)


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise a one-line error if ``state`` does not fit ``model`` exactly (names and shapes)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    name = getattr(model, "model_name", type(model).__name__)
    if missing or unexpected:
        detail = f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'"
        raise CmrsegError(
            f"{source}: weights do not fit model {name} ({len(missing)} missing, {len(unexpected)} unexpected keys; {detail})"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CmrsegError(
                f"{source}: weights do not fit model {name}: '{key}' has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[key].shape)}"
            )
