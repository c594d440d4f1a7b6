"""Shared fixtures: a small synthetic dataset, phantom volumes and tiny runs on them, a tiny training config, and
the real data (when present)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from cmrseg.config import ExperimentConfig, config_from_dict
from cmrseg.data.synth import write_synthetic_dataset, write_synthetic_volumes

REPO_ROOT = Path(__file__).resolve().parent.parent


def train_volume_run(volumes_dir: Path, out: Path, model_info: dict[str, Any]) -> Path:
    """A tiny network of ``model_info`` trained for 1 epoch on phantom volumes, per-image normalised, in ``out``."""
    from cmrseg.training.trainer import train

    train(config_from_dict(tiny_config_dict(volumes_dir, epochs=1, model_info=model_info, normalization="per_image")),
          out, progress=False)
    return out


def volume_run_fixture(name: str, model_info: dict[str, Any], doc: str) -> Any:
    """A module-scoped fixture ``name``: a run folder of a tiny network of ``model_info`` trained for 1 epoch on
    :func:`volumes_dir`; ``doc`` says what the network is."""

    @pytest.fixture(scope="module", name=name)
    def trained(volumes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return train_volume_run(volumes_dir, tmp_path_factory.mktemp("volume_run") / "run", model_info)

    trained.__doc__ = f"{doc} Trained for 1 epoch on the phantom volumes."
    return trained


@pytest.fixture(scope="session")
def volumes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four phantom patients (ED and ES, 48x48, 4-5 slices) in ACDC layout; tests only read it."""
    return write_synthetic_volumes(tmp_path_factory.mktemp("phantoms") / "acdc", patients=4, seed=5, size=48, slices=(4, 5))


def run_onnx_example(model: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``examples/onnx_predict.py`` on one phantom PNG, its mask written to ``tmp_path/mask.png``."""
    png = write_synthetic_dataset(tmp_path / "example_png", count=1, size=48) / "image" / "synth1.png"
    return subprocess.run([sys.executable, str(REPO_ROOT / "examples" / "onnx_predict.py"), str(model), str(png),
                           str(tmp_path / "mask.png")], capture_output=True, text=True, check=False)


def real_data_dir() -> Path | None:
    """``$CMRSEG_DATA`` or ``../shared/data/cmr96`` beside the repo; None when absent."""
    candidate = Path(os.environ.get("CMRSEG_DATA", REPO_ROOT.parent / "shared" / "data" / "cmr96"))
    return candidate if (candidate / "train" / "image").is_dir() else None


@pytest.fixture(scope="session")
def real_data() -> Path:
    path = real_data_dir()
    if path is None:
        pytest.skip("real cmr96 data not found (set CMRSEG_DATA or place it at ../shared/data/cmr96)")
    return path


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 labeled 64x64 phantoms, shared read-only by the tests."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "train", count=24, seed=3, size=64)


@pytest.fixture(scope="session")
def slice_run(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny U-Net (:func:`tiny_config_dict`) trained 2 epochs on :func:`synth_dir`, shared by the tests of several
    files: they only read it (a test that changes a run copies it first)."""
    from cmrseg.training.trainer import train

    run = tmp_path_factory.mktemp("slice_run") / "run"
    train(config_from_dict(tiny_config_dict(synth_dir, epochs=2)), run, progress=False)
    return run


def tiny_config_dict(train_dir: Path, **updates: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "epochs": 2,
        "batch_size": 8,
        "dataset_info": {"train_data_path": str(train_dir)},
        "model_info": {"name": "UNet", "depths": 2, "features": 8},
        "optimizer_info": {"name": "Adam", "lr": 0.01},
        "criterion_info": {"name": "DiceCE"},
        "augmentation": "geometric",
        "seed": 0,
        "threads": 1,
    }
    data.update(updates)
    return data


@pytest.fixture()
def tiny_config(synth_dir: Path) -> ExperimentConfig:
    return config_from_dict(tiny_config_dict(synth_dir))


@pytest.fixture(scope="session")
def acdc_data() -> Path:
    """``$CMRSEG_ACDC`` or ``../shared/data/acdc96`` beside the repo; the test is skipped when absent."""
    candidate = Path(os.environ.get("CMRSEG_ACDC", REPO_ROOT.parent / "shared" / "data" / "acdc96"))
    if not (candidate / "patient001" / "Info.cfg").is_file():
        pytest.skip("real acdc96 volumes not found (set CMRSEG_ACDC or place them at ../shared/data/acdc96)")
    return candidate


@pytest.fixture(scope="session", autouse=True)
def _private_export_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Unpacked exports and cached ONNX graphs go to a test folder, never the user's ``~/.cache``."""
    previous = os.environ.get("CMRSEG_CACHE")
    os.environ["CMRSEG_CACHE"] = str(tmp_path_factory.mktemp("export_cache"))
    yield
    if previous is None:
        os.environ.pop("CMRSEG_CACHE", None)
    else:
        os.environ["CMRSEG_CACHE"] = previous


def network_key(model: Any, channels: int) -> str:
    """A hash of what an ONNX export of ``model`` depends on: its class, layers, input channels and every weight."""
    digest = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}|{model!r}|{channels}".encode())
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


@pytest.fixture(scope="session", autouse=True)
def _each_network_exported_to_onnx_once() -> Any:
    """Tracing a network into an ONNX graph takes 10-60 s of CPU, and many tests export the same trained network
    (a run, then its zip, then with other metadata): the graph of a network whose class, layers, input channels and
    weights are all the same is exported once per session and reused (the metadata is still written per export)."""
    from cmrseg.formats import onnx

    graphs: dict[str, bytes] = {}
    real = onnx.export_graph

    def once(model: Any, channels: int = 1) -> bytes:
        key = network_key(model, channels)
        if key not in graphs:
            graphs[key] = real(model, channels)
        return graphs[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx, "export_graph", once)
        yield
