"""Native-resolution volumes (issue #25): the plan from the data, resampling there and back, patch training with
foreground oversampling, prediction on the input's own grid, and real units."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from cmrseg.metrics.clinical import PhaseLabel, patient_row
from cmrseg.config import config_from_dict
from cmrseg.data.patches import crop, patch_origin
from cmrseg.data.resample import resize_channels_first, resize_label, zoom_factors, zoomed_shape
from cmrseg.data.synth import native_phantom_volume, write_synthetic_volumes
from cmrseg.errors import CmrsegError
from cmrseg.planning import fingerprint_samples, make_plan, plan_dataset
from cmrseg.planning.plan import PATCH_MARGIN, PATCH_MULTIPLE

from conftest import tiny_config_dict

GRIDS = [(1.25, 160), (1.25, 144), (1.5, 128)]
"""Three phantom patients as a scanner writes them: full field of view, known spacing, sizes that differ."""


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_volumes(tmp_path_factory.mktemp("native") / "acdc", 0, seed=3, grids=GRIDS, slices=(4, 4))


@pytest.fixture(scope="module")
def native_run(native_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cmrseg.training.trainer import train

    out = tmp_path_factory.mktemp("native_run") / "run"
    config = config_from_dict(tiny_config_dict(native_dir, epochs=1, normalization="per_image", split_mode="full",
                                               model_info={"name": "UNet", "depths": 2, "features": 8}))
    train(config, out, progress=False)
    return out


def _indices(spacing: float, size: int) -> dict[str, float]:
    ed = native_phantom_volume(spacing, size, 6, seed=1)[1]
    es = native_phantom_volume(spacing, size, 6, seed=1, es=True)[1]
    voxel = (spacing, spacing, 8.0)
    return patient_row("p", [PhaseLabel.from_label("p", "ED", "ed", ed, voxel),
                             PhaseLabel.from_label("p", "ES", "es", es, voxel)])


def test_the_same_heart_at_two_resolutions_has_the_same_volumes() -> None:
    """0.8 mm on 400 x 400 and 1.9 mm on 150 x 150 pixels hold one analytic heart: its mL and grams agree within 3 %."""
    fine, coarse = _indices(0.8, 400), _indices(1.9, 150)
    for column in ("LV_EDV_ml", "LV_ESV_ml", "RV_EDV_ml", "RV_ESV_ml", "LV_mass_g"):
        assert fine[column] > 10
        assert coarse[column] == pytest.approx(fine[column], rel=0.03), column
    assert coarse["LV_EF_pct"] == pytest.approx(fine["LV_EF_pct"], abs=1.5)


def test_plan_of_a_native_dataset_follows_its_rules(native_dir: Path) -> None:
    plan = plan_dataset(native_dir)
    assert plan.target_spacing == [1.25, 1.25]  # median of 1.25, 1.25, 1.5
    extents = []
    for spacing, size in GRIDS:
        for es in (False, True):
            labels = native_phantom_volume(spacing, size, 4, seed=0, es=es)[1]
            rows, cols = np.nonzero(labels.any(axis=2))
            extents.append(((np.ptp(rows) + 1) * spacing, (np.ptp(cols) + 1) * spacing))
    heart_px = np.percentile(np.array(extents), 95, axis=0).max() / 1.25
    expected = int(np.ceil(heart_px * PATCH_MARGIN / PATCH_MULTIPLE) * PATCH_MULTIPLE)
    assert plan.patch_size == [expected, expected]
    assert expected < 160
    assert plan.fingerprint is not None and plan.fingerprint.n_patients == 3
    assert any("median in-plane spacing" in line for line in plan.describe())


def test_plan_keeps_crops_of_unknown_spacing_as_they_were(tmp_path: Path) -> None:
    """acdc96-like volumes (no spatial unit) and PNG slices: no resampling, whole slices."""
    crops = write_synthetic_volumes(tmp_path / "crops", 2, size=48, spacing=None, slices=(3, 3))
    plan = plan_dataset(crops)
    assert plan.target_spacing is None and plan.patch_size is None
    assert "unknown" in plan.reasons["target_spacing"]


def test_config_overrides_the_plan(native_dir: Path) -> None:
    config = config_from_dict(tiny_config_dict(native_dir, plan={"target_spacing": 2.0, "patch_size": 64}))
    plan = plan_dataset(native_dir, config)
    assert plan.target_spacing == [2.0, 2.0] and plan.patch_size == [64, 64]
    whole = plan_dataset(native_dir, config_from_dict(tiny_config_dict(native_dir, plan={"whole_slices": True})))
    assert whole.patch_size is None


@pytest.mark.parametrize("plan", [{"target_spacing": 0.01}, {"patch_size": 100}, {"foreground_fraction": 2}])
def test_bad_plan_keys_are_one_line_errors(native_dir: Path, plan: dict) -> None:
    with pytest.raises(CmrsegError, match="plan"):
        config_from_dict(tiny_config_dict(native_dir, plan=plan))


def test_label_resampled_there_and_back_moves_no_boundary_more_than_half_a_voxel() -> None:
    label = native_phantom_volume(1.9, 150, 1, seed=2)[1][:, :, 0]
    factors = zoom_factors((1.9, 1.9), (1.25, 1.25))
    assert factors is not None
    there = resize_label(label, zoomed_shape(label.shape, factors))
    back = resize_label(there, label.shape)
    assert back.shape == label.shape
    changed = back != label
    # a pixel may only change where the truth has a boundary within half a voxel: next to a pixel of another class
    boundary = np.zeros_like(changed)
    for value in range(4):
        region = label == value
        boundary |= region & ndimage.binary_dilation(~region)
    assert not (changed & ~boundary).any()
    assert changed.mean() < 0.02
    for value in (1, 2, 3):
        assert abs(int((back == value).sum()) - int((label == value).sum())) <= 0.05 * (label == value).sum()


def test_probabilities_resampled_there_and_back_stay_probabilities() -> None:
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=(30, 40)).transpose(2, 0, 1).astype(np.float32)
    back = resize_channels_first(resize_channels_first(probs, (45, 60)), (30, 40))
    assert back.shape == probs.shape
    np.testing.assert_allclose(back.sum(axis=0), 1.0, atol=1e-5)


def test_patches_are_centred_on_labels_as_often_as_asked() -> None:
    mask = np.zeros((200, 200), np.uint8)
    mask[150:160, 20:30] = 3
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(200):
        origin = patch_origin(mask, (64, 64), rng, foreground=True)
        hits += crop(mask, origin, (64, 64))[32, 32] == 3
    assert hits == 200
    background = [crop(mask, patch_origin(mask, (64, 64), rng, foreground=False), (64, 64)) for _ in range(200)]
    assert all(p.shape == (64, 64) for p in background)
    assert sum(bool((p == 3).any()) for p in background) < 60
    small = crop(np.ones((2, 10, 10)), patch_origin(np.zeros((10, 10), np.uint8), (16, 16), rng, False), (16, 16))
    assert small.shape == (2, 16, 16) and small.sum() == 200


def test_training_on_native_volumes_uses_the_plan(native_run: Path) -> None:
    plan = json.loads((native_run / "plan.json").read_text())
    assert plan["target_spacing"] == [1.25, 1.25]
    assert plan["patch_size"] is not None and plan["patch_size"][0] < 160
    from cmrseg.data.dataset import SegmentationDataset, prepare_data
    from cmrseg.data.input_spec import InputSpec
    from cmrseg.data.normalization import Normalization
    from cmrseg.runs import read_run_config
    from cmrseg.planning import Plan
    from cmrseg.training.trainer import resample_bundle

    config = read_run_config(native_run)
    data = resample_bundle(prepare_data(config), Plan.model_validate(plan))
    assert {s.spacing[:2] for s in data.train} == {(1.25, 1.25)}
    spec = InputSpec(normalization=Normalization("per_image"), plan=Plan.model_validate({**plan, "foreground_fraction": 1.0}))
    dataset = SegmentationDataset(data.train, spec, patches=True)
    image, mask = dataset[0]
    assert tuple(image.shape[1:]) == tuple(plan["patch_size"]) == tuple(mask.shape)
    assert mask[plan["patch_size"][0] // 2, plan["patch_size"][1] // 2] > 0


def test_prediction_on_another_grid_keeps_the_input_geometry(native_run: Path, tmp_path: Path) -> None:
    from cmrseg.inference import predict_folder

    scans = write_synthetic_volumes(tmp_path / "scans", 0, seed=9, grids=[(1.9, 100)], slices=(3, 3), with_labels=False)
    out = predict_folder(native_run, scans, tmp_path / "pred")
    source = nib.load(str(scans / "patient001" / "patient001_frame01.nii.gz"))
    predicted = nib.load(str(out[0]))
    assert predicted.shape == source.shape
    np.testing.assert_allclose(predicted.affine, source.affine)
    assert predicted.header.get_zooms() == source.header.get_zooms()


def test_plan_travels_with_the_zip_and_onnx_exports(native_run: Path, tmp_path: Path) -> None:
    from cmrseg.workflows.export import export_run
    from cmrseg.inference.volume_prediction import training_spacing

    pytest.importorskip("onnx")
    zipped = export_run(native_run, tmp_path / "model.zip")
    graph = export_run(native_run, tmp_path / "model.onnx", fmt="onnx")
    assert training_spacing(native_run) == training_spacing(zipped) == training_spacing(graph) == (1.25, 1.25)


def test_volume_without_spacing_for_a_planned_model_warns(native_run: Path, tmp_path: Path) -> None:
    from cmrseg.cli import main

    scans = write_synthetic_volumes(tmp_path / "scans", 1, size=64, spacing=None, slices=(3, 3), with_labels=False)
    with pytest.warns(UserWarning) as warned:
        assert main(["predict", "--run", str(native_run), "--images", str(scans), "--out", str(tmp_path / "pred")]) == 0
    assert any("spacing" in str(w.message) and "1.25" in str(w.message) for w in warned), [str(w.message) for w in warned]


def test_png_images_for_a_planned_model_warn(native_run: Path, synth_dir: Path, tmp_path: Path) -> None:
    from cmrseg.cli import main

    with pytest.warns(UserWarning) as warned:
        assert main(["predict", "--run", str(native_run), "--images", str(synth_dir), "--out", str(tmp_path / "pred")]) == 0
    lines = [str(w.message) for w in warned if "carry no pixel spacing" in str(w.message)]
    assert len(lines) == 1 and "1.25" in lines[0], [str(w.message) for w in warned]


def test_volumes_with_a_spacing_for_a_model_trained_without_one_warn(slice_run: Path, tmp_path: Path) -> None:
    from cmrseg.cli import main

    scans = write_synthetic_volumes(tmp_path / "scans", 1, size=64, spacing=(1.4, 1.4, 8.0), slices=(3, 3),
                                    with_labels=False)
    with pytest.warns(UserWarning) as warned:
        assert main(["predict", "--run", str(slice_run), "--images", str(scans), "--out", str(tmp_path / "pred")]) == 0
    lines = [str(w.message) for w in warned if "trained without a voxel spacing" in str(w.message)]
    assert len(lines) == 1 and "2 of the volumes" in lines[0] and "1.4x1.4 mm" in lines[0], [str(w.message) for w in warned]
    crops = write_synthetic_volumes(tmp_path / "crops", 1, size=64, spacing=None, slices=(3, 3), with_labels=False)
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        assert main(["predict", "--run", str(slice_run), "--images", str(crops), "--out", str(tmp_path / "pred2")]) == 0
    assert not any("trained without a voxel spacing" in str(w.message) for w in quiet)


def test_plan_command_prints_each_choice_and_writes_json(native_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from cmrseg.cli import main

    assert main(["plan", "--data", str(native_dir), "--out", str(tmp_path / "plan.json")]) == 0
    out = capsys.readouterr().out
    for key in ("target_spacing: 1.25x1.25 mm", "patch_size:", "batch_size:", "intensity:"):
        assert key in out
    assert json.loads((tmp_path / "plan.json").read_text())["target_spacing"] == [1.25, 1.25]
    (tmp_path / "mine.json").write_text("{}")
    assert main(["plan", "--data", str(native_dir), "--out", str(tmp_path / "mine.json")]) == 2
    assert "not written by cmrseg" in capsys.readouterr().err
    assert (tmp_path / "mine.json").read_text() == "{}"


def test_onnx_example_reproduces_the_preprocessing_on_a_native_slice(native_run: Path, tmp_path: Path) -> None:
    """examples/onnx_predict.py on one slice of a volume of another spacing gives cmrseg's mask of that slice, and
    onnxruntime's probabilities equal torch's."""
    pytest.importorskip("onnxruntime")
    from PIL import Image

    from cmrseg.data.readers import list_cases, load_volume
    from cmrseg.workflows.export import export_run
    from cmrseg.inference import PredictSettings, load_run
    from cmrseg.inference.volume_prediction import training_spacing, volume_mask, volume_probabilities

    graph = export_run(native_run, tmp_path / "model.onnx", fmt="onnx")
    scans = write_synthetic_volumes(tmp_path / "scans", 0, seed=4, grids=[(1.7, 112)], slices=(3, 3), with_labels=False)
    volume = load_volume(list_cases(scans, require_labels=False)[0], with_label=False)
    plain = PredictSettings(tta=False, postprocess=False)
    torch_predictor, _ = load_run(native_run, plain)
    onnx_predictor, _ = load_run(graph, PredictSettings(tta=False, postprocess=False, engine="onnxruntime"))
    target = training_spacing(native_run)
    torch_probs = volume_probabilities(torch_predictor, volume, target)
    np.testing.assert_allclose(volume_probabilities(onnx_predictor, volume, target), torch_probs, atol=1e-4)
    mask = volume_mask(torch_probs, postprocess=False)
    example = subprocess.run([sys.executable, str(Path(__file__).parent.parent / "examples" / "onnx_predict.py"),
                              str(graph), str(volume.path), str(tmp_path / "mask.png"), "--slice", "1"],
                             capture_output=True, text=True, check=False)
    assert example.returncode == 0, example.stderr
    example_mask = np.asarray(Image.open(tmp_path / "mask.png"))
    assert example_mask.shape == mask.shape[:2]
    # a 1-epoch network sits near ties between classes, so rounding differences flip a few pixels
    assert (example_mask == mask[:, :, 1]).mean() > 0.98
    # the example's own steps against cmrseg's: intensity mapping exact, resampling within one grey level
    import importlib.util

    import cv2

    spec = importlib.util.spec_from_file_location("onnx_example", Path(__file__).parent.parent / "examples" / "onnx_predict.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    image, spacing = module.read_nifti_slice(str(volume.path), 1)
    np.testing.assert_array_equal(image, volume.image[:, :, 1])
    assert spacing == pytest.approx((1.7, 1.7))
    for shape in ((140, 150), (80, 90)):
        ours = module.resize(image, shape).astype(int)
        assert np.abs(ours - cv2.resize(image, shape[::-1], interpolation=cv2.INTER_LINEAR).astype(int)).max() <= 1
    probs = np.random.default_rng(1).random((112, 112, 4)).astype(np.float32)
    np.testing.assert_allclose(module.resize(probs, (150, 140)), cv2.resize(probs, (140, 150)), atol=1e-5)


def test_ensemble_carries_its_members_plan_and_refuses_mixed_spacings(native_run: Path, native_dir: Path,
                                                                      tmp_path: Path) -> None:
    from cmrseg.workflows.ensemble import make_ensemble
    from cmrseg.inference.volume_prediction import training_spacing
    from cmrseg.training.trainer import train

    ensemble = make_ensemble([native_run, native_run], tmp_path / "ensemble")
    assert training_spacing(ensemble) == (1.25, 1.25)
    coarse = tmp_path / "coarse"
    train(config_from_dict(tiny_config_dict(native_dir, epochs=1, split_mode="full", plan={"target_spacing": 2.0},
                                            model_info={"name": "UNet", "depths": 2, "features": 8})), coarse,
          progress=False)
    with pytest.raises(CmrsegError, match="share one plan spacing"):
        make_ensemble([native_run, coarse], tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()


def test_validation_scores_whole_native_slices_of_different_sizes(native_dir: Path, tmp_path: Path) -> None:
    """A held-out patient's whole resampled slices differ in size from the others': validation scores each unpadded,
    every val_every epochs and after the last."""
    from cmrseg.training.trainer import train

    config = config_from_dict(tiny_config_dict(native_dir, epochs=3, val_every=2, split_mode="holdout", val_fraction=0.5,
                                               model_info={"name": "UNet", "depths": 2, "features": 8}))
    result = train(config, tmp_path / "run", progress=False)
    dice = [row["dice_mean"] for row in result.history]
    assert np.isnan(dice[0]) and np.isfinite(dice[1]) and np.isfinite(dice[2])
    assert result.best_epoch in (2, 3) and 0.0 <= result.best_dice <= 1.0


def test_native_dataset_of_one_patient_cannot_be_split(tmp_path: Path) -> None:
    """One patient plans fine but leaves nobody to validate on: a one-line error before the run folder is written."""
    from cmrseg.training.trainer import train

    one = write_synthetic_volumes(tmp_path / "one", 0, grids=[(1.25, 128)], slices=(3, 3))
    assert plan_dataset(one).fingerprint.n_patients == 1  # type: ignore[union-attr]
    config = config_from_dict(tiny_config_dict(one, epochs=1, split_mode="holdout"))
    with pytest.raises(CmrsegError, match="at least 2 patients"):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_plan_command_applies_set_without_a_config_and_checks_out_first(native_dir: Path, tmp_path: Path) -> None:
    from cmrseg.cli import main

    assert main(["plan", "--data", str(native_dir), "--set", "plan.target_spacing=2.0"]) == 0
    assert main(["plan", "--data", str(native_dir), "--set", "plan.target_spacing=-1"]) == 2
    (tmp_path / "folder").mkdir()
    assert main(["plan", "--data", str(native_dir), "--out", str(tmp_path / "folder")]) == 2
