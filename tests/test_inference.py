"""Test-time augmentation by zooms: the zoom itself, and that zoomed predictions are mapped back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cmrseg.cli import main
from cmrseg.config import config_from_dict
from cmrseg.data.normalization import Normalization
from cmrseg.data.input_spec import InputSpec
from cmrseg.data.slicing import load_folder
from cmrseg.errors import CmrsegError
from cmrseg.inference import ModelPredictor, PredictSettings, load_run, zoom
from cmrseg.workflows.report import run_report
from cmrseg.training.trainer import train

from conftest import tiny_config_dict


def _disk(size: int = 64, radius: float = 10.0) -> torch.Tensor:
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    return torch.from_numpy((np.hypot(yy, xx) <= radius).astype(np.float32))[None, None]


def test_zoom_magnifies_about_the_centre_and_zooming_back_restores() -> None:
    disk = _disk()
    area = disk.sum().item()
    assert zoom(disk, 1.2).sum().item() == pytest.approx(area * 1.44, rel=0.05)
    assert zoom(disk, 0.8).sum().item() == pytest.approx(area * 0.64, rel=0.05)
    centre = (zoom(disk, 1.2) > 0.5).nonzero().float().mean(0)[2:]
    np.testing.assert_allclose(centre.numpy(), [31.5, 31.5], atol=0.1)
    restored = zoom(zoom(disk, 1.2), 1 / 1.2)
    assert (restored - disk).abs().max().item() < 0.5 and (restored - disk).abs().mean().item() < 0.01
    torch.testing.assert_close(zoom(disk, 1.0), disk)


class _Pixelwise(torch.nn.Module):
    """Logits from each pixel's value alone: without zoom-back, zoomed predictions would not line up."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([-8.0, 2.0, 4.0, 8.0])[:, None, None, None])
            self.conv.bias.copy_(torch.tensor([4.0, 1.0, -1.0, -4.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_zoom_tta_maps_each_prediction_back_onto_the_image() -> None:
    image = (_disk(radius=14) * 150 + _disk(radius=7) * 100).numpy()[0, 0].astype(np.uint8)
    plain = ModelPredictor(_Pixelwise(), InputSpec(normalization=Normalization("dataset", 0.0, 1.0)), torch.device("cpu"), tta=True)
    zoomed = ModelPredictor(_Pixelwise(), plain.spec, plain.device, tta=True, tta_scales=(0.9, 1.0, 1.1))
    expected, got = plain.predict_proba([image])[0], zoomed.predict_proba([image])[0]
    np.testing.assert_allclose(got.sum(0), 1.0, atol=1e-5)
    error = np.abs(got - expected).mean()
    assert 1e-3 < error < 0.005
    unaligned = torch.softmax(_Pixelwise()(zoom(torch.from_numpy(image / 255.0)[None, None].float(), 1.1)), 1)[0]
    assert np.abs(unaligned.detach().numpy() - expected).mean() > 3 * error
    untouched = ModelPredictor(_Pixelwise(), plain.spec, plain.device, tta=False, tta_scales=(0.9, 1.1))
    no_tta = ModelPredictor(_Pixelwise(), plain.spec, plain.device)
    np.testing.assert_array_equal(untouched.predict_proba([image])[0], no_tta.predict_proba([image])[0])


@pytest.fixture(scope="module")
def zoom_run(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("zoom") / "run"
    train(config_from_dict(tiny_config_dict(synth_dir, epochs=1, tta=True, tta_scales=[0.9, 1.0, 1.1])), run, progress=False)
    return run


def test_a_run_predicts_with_its_configured_zooms_unless_overridden(zoom_run: Path, tmp_path: Path) -> None:
    predictor, settings = load_run(zoom_run)
    assert settings.tta and settings.tta_scales == (0.9, 1.0, 1.1) == predictor.tta_scales
    _, overridden = load_run(zoom_run, PredictSettings(tta_scales=(1.0,)))
    assert overridden.tta_scales == (1.0,)
    _, without_tta = load_run(zoom_run, PredictSettings(tta=False))
    assert without_tta.tta_scales == (1.0,)
    _, implied = load_run(zoom_run, PredictSettings(tta=None, tta_scales=(0.9, 1.0)))
    assert implied.tta and implied.tta_scales == (0.9, 1.0)
    html = run_report(zoom_run)
    assert "flip TTA at zooms 0.9, 1, 1.1" in html
    plain = tmp_path / "plain"
    shutil.copytree(zoom_run, plain)
    config = json.loads((plain / "config.json").read_text())
    config["tta_scales"] = [1.0]
    (plain / "config.json").write_text(json.dumps(config))
    assert "flip TTA at zooms" not in run_report(plain) and "flip TTA" in run_report(plain)


def test_cli_takes_zooms_and_names_a_bad_one(zoom_run: Path, synth_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    metrics = tmp_path / "metrics.json"
    assert main(["evaluate", "--run", str(zoom_run), "--data", str(synth_dir), "--tta-scales", "1.0", "1.2",
                 "--json", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["tta_scales"] == [1.0, 1.2]
    capsys.readouterr()
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(zoom_run), "--images", str(synth_dir / "image"), "--out", str(out),
                 "--tta-scales", "3"]) == 2
    error = capsys.readouterr().err.strip()
    assert "tta_scales must be one or more zoom factors in [0.5, 2], got [3.0]" in error and "\n" not in error
    assert not out.exists()


def test_a_single_model_and_its_ensemble_folder_zoom_alike(zoom_run: Path, synth_dir: Path, tmp_path: Path) -> None:
    """The zoom acts before normalisation, so a run and a 2x ensemble of it predict the same."""
    import shutil

    from cmrseg.workflows.ensemble import make_ensemble

    twin = tmp_path / "twin"
    shutil.copytree(zoom_run, twin)
    ensemble = make_ensemble([zoom_run, twin], tmp_path / "ens", tta=True)
    images = [s.image for s in load_folder(synth_dir)[:3]]
    single, _ = load_run(zoom_run, PredictSettings(device="cpu"))
    pair, settings = load_run(ensemble, PredictSettings(device="cpu"))
    assert settings.tta_scales == (0.9, 1.0, 1.1)
    np.testing.assert_allclose(np.stack(pair.predict_proba(images)), np.stack(single.predict_proba(images)), atol=1e-5)


def test_predict_settings_take_the_run_config_where_left_open() -> None:
    from cmrseg.config import ExperimentConfig, PostprocessInfo

    config = ExperimentConfig(tta=True, tta_scales=[0.9, 1.0], postprocess=PostprocessInfo(largest_component=True,
                                                                                             class_weights=[1, 2, 1, 1]))
    resolved = PredictSettings().resolve(config)
    assert (resolved.tta, resolved.tta_scales, resolved.postprocess, resolved.class_weights) == (True, (0.9, 1.0), True, [1, 2, 1, 1])
    assert PredictSettings(tta=False).resolve(config).tta_scales == (1.0,)
    assert PredictSettings(tta_scales=[1.1]).resolve(ExperimentConfig()).tta is True
    assert PredictSettings(postprocess=False, class_weights=[1, 1, 1, 1]).resolve(config).postprocess is False
    assert PredictSettings(device="cpu", checkpoint="last").resolve(config).checkpoint == "last"
    with pytest.raises(CmrsegError, match="tta_scales"):
        PredictSettings(tta_scales=(3.0,)).resolve(config)


def test_warp_average_undoes_each_warp_and_matches_zoom() -> None:
    from cmrseg.inference.tta import IDENTITY, sampling_matrix, warp_average, zoom_warp

    raw = np.zeros((2, 1, 32, 32), np.uint8)
    raw[:, :, 8:24, 10:20] = 200

    def identity(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(images, np.float32))

    for warp in ((10.0, 1.0, 0.0, 0.0), (0.0, 1.0, 0.5, -0.5), (-10.0, 0.9, 0.5, 0.0)):
        matrix = sampling_matrix(warp, 32)
        torch.testing.assert_close(sampling_matrix(warp, 32, inverse=True), torch.linalg.inv(matrix), atol=1e-6, rtol=0)
    back = warp_average(identity, raw, [IDENTITY, zoom_warp(1.1)])
    assert back.shape == (2, 1, 32, 32)
    assert float((back - torch.from_numpy(raw.astype(np.float32))).abs()[..., 12:20, 12:18].max()) < 1.0
    zoomed = warp_average(identity, raw, [zoom_warp(1.1)])
    torch.testing.assert_close(zoomed, zoom(zoom(identity(raw), 1.1), 1 / 1.1, padding="border"))


def test_bfloat16_predicts_close_to_float32_and_only_with_torch(zoom_run: Path, synth_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    images = [s.image for s in load_folder(synth_dir)[:4]]
    exact, _ = load_run(zoom_run, PredictSettings(device="cpu"))
    fast, settings = load_run(zoom_run, PredictSettings(device="cpu", precision="bfloat16"))
    assert settings.precision == fast.precision == "bfloat16"
    reference, approximate = np.stack(exact.predict_proba(images)), np.stack(fast.predict_proba(images))
    assert approximate.dtype == np.float32
    difference = float(np.abs(approximate - reference).max())
    assert 0 < difference < 0.05, "bfloat16 really ran, and stayed close"
    assert (approximate.argmax(1) == reference.argmax(1)).mean() > 0.99
    with pytest.raises(CmrsegError, match="precision 'half': expected one of float32, bfloat16"):
        PredictSettings(precision="half")
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(zoom_run), "--images", str(synth_dir / "image"), "--out", str(out),
                 "--precision", "bfloat16", "--engine", "onnxruntime"]) == 2
    assert "--precision bfloat16 runs with the torch engine" in capsys.readouterr().err and not out.exists()
    assert main(["predict", "--run", str(zoom_run), "--images", str(synth_dir / "image"), "--out", str(out),
                 "--precision", "bfloat16"]) == 0
    assert len(list(out.glob("*_mask.png"))) == len(load_folder(synth_dir))


def test_clean_up_keeps_the_largest_rv_and_myo_and_the_lv_the_myocardium_encloses() -> None:
    from cmrseg.inference.postprocess import largest_component

    mask = np.zeros((40, 40, 2), dtype=np.uint8)
    mask[2:10, 2:10] = 1          # RV, 128 voxels: kept
    mask[30:32, 30:32] = 1        # RV, 8 voxels: dropped
    mask[12:26, 12:26] = 2        # myocardium ring ...
    mask[15:23, 15:23] = 3        # ... round a small LV (128 voxels): the LV kept
    mask[2:12, 26:38, :] = 3      # a larger LV blob (240 voxels) that touches no myocardium: dropped
    mask[36:39, 2:5, 0] = 2       # a stray myocardium speck: dropped
    cleaned = largest_component(mask)
    assert (cleaned == 3).sum() == 128 and cleaned[18, 18, 0] == 3 and cleaned[5, 30, 0] == 0
    assert (cleaned == 1).sum() == 128 and cleaned[31, 31, 1] == 0
    assert (cleaned == 2).sum() == (mask[12:26, 12:26] == 2).sum()
    by_size = mask.copy()
    by_size[12:26, 12:26][by_size[12:26, 12:26] == 2] = 0  # without a myocardium the LV falls back to the larger
    assert (largest_component(by_size) == 3).sum() == 240
    assert np.array_equal(largest_component(mask[:, :, 0]), cleaned[:, :, 0])  # a slice alike
