"""Phase- and position-conditioned models (``model_info.conditions``): the planes, training, prediction, export."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from cmrseg.cli import main
from cmrseg.config import config_from_dict
from cmrseg.data.conditions import condition_values, with_planes
from cmrseg.data.dataset import SegmentationDataset
from cmrseg.data.input_spec import InputSpec
from cmrseg.data.normalization import Normalization
from cmrseg.data.slicing import load_folder
from cmrseg.data.synth import write_synthetic_dataset
from cmrseg.data.readers import list_cases, load_volume
from cmrseg.errors import CmrsegError
from cmrseg.inference import PredictSettings, load_run
from cmrseg.models import build_model
from cmrseg.inference.volume_prediction import volume_probabilities

from conftest import run_onnx_example, tiny_config_dict, train_volume_run, volume_run_fixture

PHASE_MODEL = {"name": "UNet", "depths": 2, "features": 8, "conditions": ["phase", "position"]}
phase_run = volume_run_fixture("phase_run", PHASE_MODEL, "A tiny phase- and position-conditioned U-Net.")


def test_condition_values_encode_phase_and_position() -> None:
    both = ("phase", "position")
    assert condition_values(both, "ED", 0, 5, "x").tolist() == [-1.0, -1.0]
    assert condition_values(both, "ES", 4, 5, "x").tolist() == [1.0, 1.0]
    assert condition_values(("position",), None, 1, 5, "x").tolist() == [-0.5]
    assert condition_values(("position", "phase"), "ES", 0, 1, "x").tolist() == [0.0, 1.0]
    assert condition_values((), None, None, None, "x").shape == (0,)
    with pytest.raises(CmrsegError, match=r"^case\.nii\.gz: this model is conditioned on the cardiac phase"):
        condition_values(both, None, 0, 5, "case.nii.gz")
    planes = with_planes(np.zeros((2, 1, 3, 4), np.float32), np.array([[-1.0, 0.5], [1.0, -0.5]], np.float32))
    assert planes.shape == (2, 3, 3, 4)
    assert np.all(planes[0, 1] == -1.0) and np.all(planes[0, 2] == 0.5) and np.all(planes[1, 1] == 1.0)


def test_the_config_counts_one_network_channel_per_condition(tmp_path: Path) -> None:
    config = config_from_dict(tiny_config_dict(tmp_path, model_info=PHASE_MODEL))
    assert config.model_info.network_channels == 3 and config.model_info.image_channels == 1
    assert build_model(config.model_info).input_channels == 3
    context = config_from_dict(tiny_config_dict(tmp_path, model_info={**PHASE_MODEL, "context_slices": 1}))
    assert context.model_info.network_channels == 5
    with pytest.raises(CmrsegError, match="names one twice"):
        config_from_dict(tiny_config_dict(tmp_path, model_info={**PHASE_MODEL, "conditions": ["phase", "phase"]}))
    with pytest.raises(CmrsegError, match="model_info.conditions.*heart_rate|heart_rate"):
        config_from_dict(tiny_config_dict(tmp_path, model_info={**PHASE_MODEL, "conditions": ["heart_rate"]}))


def test_training_batches_carry_the_planes_behind_the_normalised_slice(volumes_dir: Path) -> None:
    samples = [s for s in load_folder(volumes_dir) if s.volume == list_cases(volumes_dir)[1].case]
    assert samples[0].phase == "ES"
    dataset = SegmentationDataset(samples, InputSpec(conditions=("phase", "position"), normalization=Normalization("per_image")))
    last = len(samples) - 1
    first_image, _ = dataset[0]
    last_image, _ = dataset[last]
    assert first_image.shape == (3, 48, 48)
    np.testing.assert_allclose(first_image[0].numpy(), Normalization("per_image").apply(samples[0].image), atol=1e-6)
    assert float(first_image[1].min()) == float(first_image[1].max()) == 1.0
    assert float(first_image[2].max()) == -1.0 and float(last_image[2].min()) == 1.0


def test_png_slices_cannot_train_a_conditioned_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pngs = write_synthetic_dataset(tmp_path / "png", count=4, seed=1, size=32)
    config = tmp_path / "config.json"
    config.write_text(config_from_dict(tiny_config_dict(pngs, epochs=1, model_info=PHASE_MODEL)).model_dump_json())
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "only slices of NIfTI volumes know" in err


def test_a_conditioned_model_predicts_volumes_and_reads_the_phase(phase_run: Path, volumes_dir: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--run", str(phase_run), "--images", str(volumes_dir), "--out", str(tmp_path / "pred")]) == 0
    case = list_cases(volumes_dir)[0]
    volume = load_volume(case)
    assert (tmp_path / "pred" / f"{case.case}.nii.gz").is_file()
    predictor, _ = load_run(phase_run, PredictSettings(tta=False))
    image = volume.image[:, :, 2]
    ed, es = predictor.predict_proba([image, image], [np.array([-1.0, 0.0]), np.array([1.0, 0.0])])
    assert float(np.abs(ed - es).max()) > 1e-4
    probs = volume_probabilities(predictor, volume)
    alone = predictor.predict_proba([image], [volume.conditions(("phase", "position"), 2)])[0]
    np.testing.assert_allclose(probs[..., 2], alone, rtol=0, atol=1e-5)
    with pytest.raises(CmrsegError, match="conditioned on phase and position .* not single images"):
        predictor.predict_proba([image])
    pngs = write_synthetic_dataset(tmp_path / "png", count=2, seed=1, size=48)
    capsys.readouterr()
    assert main(["predict", "--run", str(phase_run), "--images", str(pngs), "--out", str(tmp_path / "p2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not PNG slices" in err
    assert not (tmp_path / "p2").exists()


def test_a_volume_of_unknown_phase_is_a_one_line_error(phase_run: Path, volumes_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(list_cases(volumes_dir)[0].image_path, flat / "scan.nii.gz")
    capsys.readouterr()
    assert main(["predict", "--run", str(phase_run), "--images", str(flat), "--out", str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "scan.nii.gz" in err and "phase is unknown" in err
    assert not (tmp_path / "pred").exists()


def test_evaluate_scores_a_conditioned_model_per_volume(phase_run: Path, volumes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--run", str(phase_run), "--data", str(volumes_dir), "--json", str(out)]) == 0
    assert out.is_file() and "ED" in out.read_text()


def test_onnx_export_of_a_conditioned_model_matches_torch(phase_run: Path, volumes_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    assert main(["export", "--run", str(phase_run), "--out", str(out)]) == 0
    settings = PredictSettings(tta=True, tta_scales=(0.9, 1.0))
    torch_predictor, _ = load_run(phase_run, settings)
    onnx_predictor, _ = load_run(out, PredictSettings(tta=True, tta_scales=(0.9, 1.0), engine="onnxruntime"))
    assert onnx_predictor.spec.conditions == ("phase", "position")
    volume = load_volume(list_cases(volumes_dir)[1])
    np.testing.assert_allclose(volume_probabilities(onnx_predictor, volume), volume_probabilities(torch_predictor, volume),
                               rtol=0, atol=1e-4)
    example = run_onnx_example(out, tmp_path)
    assert example.returncode != 0 and "conditioned on phase and position" in example.stderr
    assert not (tmp_path / "mask.png").exists()


def test_an_ensemble_hands_each_member_its_own_planes(phase_run: Path, volumes_dir: Path, tmp_path: Path) -> None:
    plain = train_volume_run(volumes_dir, tmp_path / "plain", {"name": "UNet", "depths": 2, "features": 8})
    only_phase = train_volume_run(volumes_dir, tmp_path / "only_phase",
                                  {"name": "UNet", "depths": 2, "features": 8, "conditions": ["phase"]})
    assert main(["ensemble", str(plain), str(only_phase), str(phase_run), "--out", str(tmp_path / "mixed")]) == 0
    members = [load_run(run, PredictSettings(tta=False))[0] for run in (plain, only_phase, phase_run)]
    mixed, _ = load_run(tmp_path / "mixed", PredictSettings(tta=False))
    assert mixed.spec.conditions == ("phase", "position") and mixed.spec.network_channels == 3
    volume = load_volume(list_cases(volumes_dir)[1])
    expected = np.mean([volume_probabilities(member, volume) for member in members], axis=0)
    np.testing.assert_allclose(volume_probabilities(mixed, volume), expected, rtol=0, atol=1e-4)
    assert not np.allclose(volume_probabilities(members[0], volume), volume_probabilities(members[2], volume), atol=1e-3)
    if importlib.util.find_spec("onnxruntime") is not None:
        assert main(["export", "--run", str(tmp_path / "mixed"), "--out", str(tmp_path / "mixed.onnx")]) == 0
        onnx_mixed, _ = load_run(tmp_path / "mixed.onnx", PredictSettings(tta=False, engine="onnxruntime"))
        np.testing.assert_allclose(volume_probabilities(onnx_mixed, volume), expected, rtol=0, atol=1e-4)
