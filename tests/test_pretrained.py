"""Starting weights from a local file or a URL through the torch.hub cache, with clear offline errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cmrseg.config import ModelInfo
from cmrseg.errors import CmrsegError
from cmrseg.models import build_model

TINY = {"name": "UNet", "depths": 2, "features": 8}


@pytest.fixture()
def hub_dir(tmp_path: Path) -> Iterator[Path]:
    """A private torch.hub cache for one test, restored afterwards."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


def _saved_weights(path: Path) -> dict[str, torch.Tensor]:
    state = build_model(ModelInfo(**TINY)).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, path)
    return state


def test_url_is_served_from_the_torch_hub_cache(hub_dir: Path) -> None:
    state = _saved_weights(hub_dir / "checkpoints" / "unet-tiny.pt")
    model = build_model(ModelInfo(**TINY, pretrained="https://example.invalid/weights/unet-tiny.pt?download=1"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_offline_without_cache_fails_fast_with_one_line(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMRSEG_OFFLINE", "1")
    with pytest.raises(CmrsegError, match="not in the torch.hub cache .* offline mode is on"):
        build_model(ModelInfo(**TINY, pretrained="https://example.invalid/missing.pt"))


def test_unreachable_url_reports_download_failure(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CMRSEG_OFFLINE", raising=False)

    def refuse(url: str, dst: str, progress: bool = True) -> None:
        raise ConnectionError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    with pytest.raises(CmrsegError, match="download failed and no cached copy"):
        build_model(ModelInfo(**TINY, pretrained="https://example.invalid/missing.pt"))
    assert not (hub_dir / "checkpoints" / "missing.pt").exists()


def test_missing_local_file(tmp_path: Path) -> None:
    with pytest.raises(CmrsegError, match="pretrained weights file not found"):
        build_model(ModelInfo(**TINY, pretrained=str(tmp_path / "nope.pt")))
