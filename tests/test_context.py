"""2.5-D input (``model_info.context_slices``): each slice with its neighbours, from training to ONNX."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch.utils.data import SequentialSampler

from cmrseg.cli import main
from cmrseg.config import config_from_dict
from cmrseg.data.dataset import SegmentationDataset, pad_collate, prepare_data
from cmrseg.data.input_spec import InputSpec
from cmrseg.data.normalization import MemberNormalization, Normalization
from cmrseg.data.slicing import load_folder
from cmrseg.data.synth import write_synthetic_dataset
from cmrseg.data.readers import list_cases, load_volume
from cmrseg.data.slicing import context_stack
from cmrseg.errors import CmrsegError
from cmrseg.inference import PredictSettings, load_run
from cmrseg.models import build_model
from cmrseg.inference.volume_prediction import volume_probabilities

from conftest import run_onnx_example, tiny_config_dict, train_volume_run, volume_run_fixture

CONTEXT_MODEL = {"name": "UNet", "depths": 2, "features": 8, "context_slices": 1}
context_run = volume_run_fixture("context_run", CONTEXT_MODEL, "A tiny 2.5-D U-Net.")


def test_context_stack_holds_the_neighbours_and_zeros_beyond_the_ends() -> None:
    image = np.arange(1, 5, dtype=np.uint8)[None, None, :].repeat(3, 0).repeat(2, 1)  # slice z is all z+1
    assert context_stack(image, 2).shape == (3, 2)
    first, middle, last = (context_stack(image, z, 1) for z in (0, 1, 3))
    assert first.shape == (3, 2, 3) and first.dtype == np.uint8
    assert first[0, 0].tolist() == [0, 1, 2]
    assert middle[0, 0].tolist() == [1, 2, 3]
    assert last[0, 0].tolist() == [3, 4, 0]
    assert context_stack(image, 0, 2)[0, 0].tolist() == [0, 0, 1, 2, 3]


def test_each_channel_is_normalised_on_its_own() -> None:
    rng = np.random.default_rng(0)
    stack = np.stack([np.zeros((8, 8), np.uint8), rng.integers(0, 255, (8, 8), dtype=np.uint8),
                      rng.integers(100, 120, (8, 8), dtype=np.uint8)])
    for mode in (Normalization("per_image"), Normalization("dataset", 0.3, 0.2)):
        out = mode.apply_channels(stack)
        assert out.shape == (3, 8, 8) and out.dtype == np.float32
        for channel in range(3):
            np.testing.assert_allclose(out[channel], mode.apply(stack[channel]), rtol=0, atol=1e-6)
        member = MemberNormalization.from_normalization(mode)(torch.from_numpy(stack[None] / 255.0).float())
        np.testing.assert_allclose(member[0].numpy(), out, rtol=0, atol=1e-4)
    assert np.all(Normalization("per_image").apply_channels(stack)[0] == 0)


def test_volume_samples_and_batches_carry_the_neighbours(volumes_dir: Path) -> None:
    samples = load_folder(volumes_dir, context_slices=1)
    plain = {s.id: s for s in load_folder(volumes_dir)}
    assert len(samples) == len(plain)
    for sample in samples:
        assert sample.image.shape == (48, 48, 3)
        np.testing.assert_array_equal(sample.slice_image, plain[sample.id].image)
    dataset = SegmentationDataset(samples[:3], InputSpec(context_slices=1, normalization=Normalization("per_image")))
    images, masks = pad_collate([dataset[i] for i in range(3)])
    assert images.shape == (3, 3, 48, 48) and masks.shape == (3, 48, 48)
    assert float(images[0, 0].abs().max()) == 0.0, "the first slice of a volume has no neighbour below"


def test_context_needs_volumes_and_a_single_input_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pngs = write_synthetic_dataset(tmp_path / "png", count=4, seed=1, size=32)
    with pytest.raises(CmrsegError, match=r"png: model_info.context_slices 1 needs NIfTI volumes"):
        prepare_data(config_from_dict(tiny_config_dict(pngs, model_info=CONTEXT_MODEL)))
    with pytest.raises(CmrsegError, match=r"input_channels must stay 1 with context_slices"):
        config_from_dict(tiny_config_dict(pngs, model_info={**CONTEXT_MODEL, "input_channels": 3}))
    assert build_model(config_from_dict(tiny_config_dict(pngs, model_info=CONTEXT_MODEL)).model_info).input_channels == 3


def test_a_context_model_predicts_volumes_and_refuses_png_slices(context_run: Path, volumes_dir: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--run", str(context_run), "--images", str(volumes_dir), "--out", str(tmp_path / "pred")]) == 0
    case = list_cases(volumes_dir)[0]
    written = nib.load(str(tmp_path / "pred" / f"{case.case}.nii.gz"))
    assert written.shape == load_volume(case).image.shape
    pngs = write_synthetic_dataset(tmp_path / "png", count=2, seed=1, size=48)
    capsys.readouterr()
    assert main(["predict", "--run", str(context_run), "--images", str(pngs), "--out", str(tmp_path / "p2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs NIfTI volumes" in err and str(pngs) in err
    assert not (tmp_path / "p2").exists()
    predictor, _ = load_run(context_run)
    with pytest.raises(CmrsegError, match="2.5-D .* not a single slice"):
        predictor.predict_proba([load_volume(case).image[:, :, 0]])


def test_neighbours_change_the_prediction(context_run: Path, volumes_dir: Path) -> None:
    """The network really reads the neighbour channels: blanking them changes its output."""
    predictor, _ = load_run(context_run, PredictSettings(tta=False))
    volume = load_volume(list_cases(volumes_dir)[0])
    stack = context_stack(volume.image, 1, 1)
    blanked = stack.copy()
    blanked[:, :, [0, 2]] = 0
    with_context, without = predictor.predict_proba([stack, blanked])
    assert float(np.abs(with_context - without).max()) > 1e-3
    probs = volume_probabilities(predictor, volume)
    np.testing.assert_allclose(probs[..., 1], with_context, rtol=0, atol=1e-5)


def test_onnx_export_of_a_context_model_matches_torch(context_run: Path, volumes_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    assert main(["export", "--run", str(context_run), "--out", str(out)]) == 0
    settings = PredictSettings(tta=True, tta_scales=(0.9, 1.0))
    torch_predictor, _ = load_run(context_run, settings)
    onnx_predictor, _ = load_run(out, PredictSettings(tta=True, tta_scales=(0.9, 1.0), engine="onnxruntime"))
    assert onnx_predictor.spec.context_slices == 1
    volume = load_volume(list_cases(volumes_dir)[1])
    np.testing.assert_allclose(volume_probabilities(onnx_predictor, volume), volume_probabilities(torch_predictor, volume),
                               rtol=0, atol=1e-4)
    example = run_onnx_example(out, tmp_path)
    assert example.returncode != 0 and "a 2.5-D model" in example.stderr and not (tmp_path / "mask.png").exists()


def test_an_ensemble_hands_a_2d_member_the_centre_slice(context_run: Path, volumes_dir: Path, tmp_path: Path) -> None:
    from cmrseg.training.trainer import train

    flat = tmp_path / "flat"
    train(config_from_dict(tiny_config_dict(volumes_dir, epochs=1)), flat, progress=False)
    flat_predictor, _ = load_run(flat, PredictSettings(tta=False))
    with pytest.raises(CmrsegError, match="this model takes single slices, not a stack of 3 slices"):
        flat_predictor.predict_proba([context_stack(load_volume(list_cases(volumes_dir)[0]).image, 1, 1)])
    assert main(["ensemble", str(context_run), str(flat), "--out", str(tmp_path / "ens")]) == 0
    volume = load_volume(list_cases(volumes_dir)[0])
    single, _ = load_run(context_run, PredictSettings(tta=False))
    mixed, _ = load_run(tmp_path / "ens", PredictSettings(tta=False))
    assert mixed.spec.context_slices == 1
    expected = (volume_probabilities(single, volume) + volume_probabilities(flat_predictor, volume)) / 2
    np.testing.assert_allclose(volume_probabilities(mixed, volume), expected, rtol=0, atol=1e-4)


def test_slice_sampling_weights_each_third_of_a_volume(volumes_dir: Path, tmp_path: Path) -> None:
    from cmrseg.config import SliceSampling
    from cmrseg.data.dataset import position_weights
    from cmrseg.training.trainer import Trainer

    samples = load_folder(volumes_dir)
    weights = position_weights(samples, SliceSampling(base=3, mid=1, apex=0))
    by_id = dict(zip((s.id for s in samples), weights, strict=True))
    five = next(c.case for c in list_cases(volumes_dir) if load_volume(c).n_slices == 5)
    assert [by_id[f"{five}_z{z:02d}"] for z in range(5)] == [3, 3, 1, 1, 0]  # 5 slices: base 0-1, mid 2-3, apex 4
    with pytest.raises(CmrsegError, match="slice_sampling needs a volume dataset"):
        position_weights(load_folder(write_synthetic_dataset(tmp_path / "png", count=2, size=32)), SliceSampling())
    with pytest.raises(CmrsegError, match="at least one of base, mid, apex"):
        config_from_dict(tiny_config_dict(volumes_dir, slice_sampling={"base": 0, "mid": 0, "apex": 0}))

    config = config_from_dict(tiny_config_dict(volumes_dir, epochs=1, slice_sampling={"base": 0, "mid": 1, "apex": 0}))
    trainer = Trainer(config, tmp_path / "run", progress=False)
    drawn = list(trainer._loader(trainer.train_set, True, 1).sampler)
    train = prepare_data(config).train
    assert len(drawn) == len(train) and len(set(drawn)) > 1
    assert all(by_id[train[i].id] == 1 for i in drawn), "only mid slices are drawn"
    assert isinstance(trainer._loader(trainer.val_set, False, 1).sampler, SequentialSampler), "validation is not resampled"
