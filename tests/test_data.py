"""Reading folders, bad files, splits, normalisation, augmentation alignment and synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cmrseg.data.dataset import (
    SegmentationDataset,
    holdout_split,
    kfold_split,
    pad_collate,
    patient_group,
    prepare_data,
    share_of_patients,
)
from cmrseg.data.input_spec import InputSpec
from cmrseg.data.normalization import Normalization
from cmrseg.data.readers.png import list_images, load_image
from cmrseg.data.slicing import Sample, load_folder
from cmrseg.data.synth import write_synthetic_dataset
from cmrseg.data.transforms import build_pipeline
from cmrseg.errors import CmrsegError
from cmrseg.config import config_from_dict

from conftest import tiny_config_dict


def _write(folder: Path, stem: str, image: np.ndarray, mask: np.ndarray | None = None) -> None:
    (folder / "image").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "image" / f"{stem}.png")
    if mask is not None:
        (folder / "mask").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(folder / "mask" / f"{stem}_mask.png")


def _pair(h: int = 8, w: int = 8) -> tuple[np.ndarray, np.ndarray]:
    image = np.arange(h * w, dtype=np.uint8).reshape(h, w)
    mask = (np.arange(h * w).reshape(h, w) % 4).astype(np.uint8)
    return image, mask


def test_natural_sort_and_any_size(tmp_path: Path) -> None:
    for stem in ("cmr10", "cmr2", "cmr1"):
        _write(tmp_path, stem, *_pair(40, 56))
    samples = load_folder(tmp_path)
    assert [s.id for s in samples] == ["cmr1", "cmr2", "cmr10"]
    assert samples[0].image.shape == (40, 56) and samples[0].image.dtype == np.uint8
    assert samples[0].mask is not None and set(np.unique(samples[0].mask)) == {0, 1, 2, 3}


def test_unlabeled_folder_allowed_without_masks(tmp_path: Path) -> None:
    _write(tmp_path, "a", _pair()[0])
    assert load_folder(tmp_path, require_masks=False)[0].mask is None


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing_mask", "no mask found"),
        ("size_mismatch", "does not match its image"),
        ("bad_values", "mask values must be 0-3"),
        ("not_png", "not a PNG file"),
        ("corrupt", "corrupt PNG"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, setup: str, expected: str) -> None:
    image, mask = _pair()
    if setup == "missing_mask":
        _write(tmp_path, "cmr1", image)
    elif setup == "size_mismatch":
        _write(tmp_path, "cmr1", image, np.zeros((9, 8), np.uint8))
    elif setup == "bad_values":
        _write(tmp_path, "cmr1", image, np.full((8, 8), 7, np.uint8))
    elif setup == "not_png":
        (tmp_path / "image").mkdir()
        Image.fromarray(image).save(tmp_path / "image" / "cmr1.png", format="JPEG")
    else:
        (tmp_path / "image").mkdir()
        (tmp_path / "image" / "cmr1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(CmrsegError, match=expected) as info:
        load_folder(tmp_path)
    assert "cmr1" in str(info.value) and "\n" not in str(info.value)


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "image").mkdir()
    with pytest.raises(CmrsegError, match="no images found"):
        list_images(tmp_path)


def test_rgb_image_is_converted_with_warning(tmp_path: Path) -> None:
    rgb = np.zeros((5, 6, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "x.png")
    with pytest.warns(UserWarning, match="converted to grayscale"):
        gray = load_image(tmp_path / "x.png")
    assert gray.shape == (5, 6) and gray.dtype == np.uint8 and gray[0, 0] == 76  # ITU-R 601 luma of pure red


def test_patient_pairs_stay_together() -> None:
    ids = [f"cmr{i}" for i in range(1, 21)]
    assert patient_group("cmr1") == patient_group("cmr2") != patient_group("cmr3")
    train, val = holdout_split(ids, 0.2, seed=5)
    assert len(val) == 4 and not set(train) & set(val)
    for sample_id in val:
        number = int(sample_id[3:])
        partner = f"cmr{number + 1 if number % 2 else number - 1}"
        assert partner in val
    assert holdout_split(ids, 0.2, seed=5) == (train, val)
    assert holdout_split(ids, 0.2, seed=6) != (train, val)


def test_kfold_covers_every_id_once() -> None:
    ids = [f"cmr{i}" for i in range(1, 21)]
    val_sets = [kfold_split(ids, 5, fold, seed=0)[1] for fold in range(5)]
    assert sorted(i for fold in val_sets for i in fold) == sorted(ids)


def test_split_seed_fixes_the_split_while_the_training_seed_varies(synth_dir: Path) -> None:
    def val_ids(**keys: int) -> list[str]:
        return sorted(s.id for s in prepare_data(config_from_dict(tiny_config_dict(synth_dir, folds=4, fold=1, **keys))).val)

    assert val_ids(seed=1, split_seed=0) == val_ids(seed=0) == val_ids(seed=5, split_seed=0)
    assert val_ids(seed=1) != val_ids(seed=0)


def test_train_fraction_keeps_nested_whole_patients_and_the_whole_validation_side(synth_dir: Path) -> None:
    ids = [f"cmr{i}" for i in range(1, 41)]
    quarter, half = share_of_patients(ids, 0.25, seed=3), share_of_patients(ids, 0.5, seed=3)
    assert (len(quarter), len(half)) == (10, 20) and set(quarter) < set(half)
    assert all(patient_group(i) in {patient_group(j) for j in quarter} for i in quarter)
    assert {patient_group(i) for i in quarter}.isdisjoint({patient_group(i) for i in ids if i not in quarter})
    assert share_of_patients(ids, 1.0, seed=3) == ids

    def split(**keys: float) -> tuple[list[str], list[str]]:
        bundle = prepare_data(config_from_dict(tiny_config_dict(synth_dir, folds=3, fold=0, **keys)))
        return [s.id for s in bundle.train], [s.id for s in bundle.val]

    (all_train, val), (part_train, part_val) = split(), split(train_fraction=0.5)
    assert part_val == val and set(part_train) < set(all_train) and len(part_train) == len(all_train) // 2


def test_split_modes(synth_dir: Path, tmp_path: Path) -> None:
    other = write_synthetic_dataset(tmp_path / "val", count=4, seed=9, size=64)
    holdout = prepare_data(config_from_dict(tiny_config_dict(synth_dir)))
    assert len(holdout.train) + len(holdout.val) == 24 and holdout.val
    folder = prepare_data(config_from_dict(tiny_config_dict(synth_dir, dataset_info={"train_data_path": str(synth_dir), "val_data_path": str(other)})))
    assert (len(folder.train), len(folder.val)) == (24, 4)
    full = prepare_data(config_from_dict(tiny_config_dict(synth_dir, split_mode="full", dataset_info={"train_data_path": str(synth_dir), "val_data_path": str(other)})))
    assert (len(full.train), len(full.val)) == (28, 0)


def test_normalization_is_fitted_and_applied() -> None:
    images = [np.full((4, 4), 51, np.uint8), np.full((4, 4), 153, np.uint8)]
    norm = Normalization.fit(images)
    assert norm.mean == pytest.approx(0.4) and norm.std == pytest.approx(0.2)
    assert norm.apply(images[0]) == pytest.approx(np.full((4, 4), -1.0))
    per_image = Normalization.fit(images, "per_image").apply(np.array([[0, 255]], np.uint8))
    assert per_image == pytest.approx(np.array([[-1.0, 1.0]]))
    assert Normalization.from_dict(norm.to_dict()) == norm


def test_augmentation_runs_and_keeps_image_and_mask_aligned() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((48, 48), np.uint8)
    mask[10:30, 5:20], mask[30:40, 25:45] = 1, 3
    image = (mask * 60).astype(np.uint8)
    pipeline = build_pipeline([{"name": "HorizontalFlip", "p": 1.0}, {"name": "RandomRotate90", "p": 1.0}], seed=1)
    changed = 0
    for _ in range(6):
        out = pipeline(image=image, mask=mask)
        assert np.array_equal(out["image"], (out["mask"] * 60).astype(np.uint8))
        changed += not np.array_equal(out["mask"], mask)
    assert changed == 6
    origin = build_pipeline("origin", seed=int(rng.integers(100)))
    outputs = [origin(image=image, mask=mask)["image"] for _ in range(5)]
    assert any(not np.array_equal(o, image) for o in outputs)


def test_unknown_transform_is_rejected() -> None:
    with pytest.raises(CmrsegError, match="'Sharpen2' is not an albumentations transform"):
        build_pipeline([{"name": "Sharpen2"}])


def test_dataset_tensors_offline_copies_and_epoch_seeding() -> None:
    samples = [Sample(f"s{i}", np.full((16, 16), 10 * i, np.uint8), np.eye(16, dtype=np.uint8)) for i in range(3)]
    dataset = SegmentationDataset(samples, InputSpec(normalization=Normalization("dataset", 0.0, 1.0)), "origin", n_aug=2, seed=0)
    assert len(dataset) == 9
    image, mask = dataset[0]
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32 and mask.dtype == torch.int64
    dataset.set_epoch(3)
    first = [dataset[i][1] for i in range(9)]
    dataset.set_epoch(3)
    again = [dataset[i][1] for i in range(9)]
    assert all((a == b).all() for a, b in zip(first, again))
    images, masks = pad_collate([(image, mask), (image[:, :10, :12], mask[:10, :12])])
    assert images.shape == (2, 1, 16, 16) and masks[1, 10:].sum() == 0


def test_synthetic_is_deterministic_per_seed(tmp_path: Path) -> None:
    a = load_folder(write_synthetic_dataset(tmp_path / "a", 3, seed=7))
    b = load_folder(write_synthetic_dataset(tmp_path / "b", 3, seed=7))
    c = load_folder(write_synthetic_dataset(tmp_path / "c", 3, seed=8))
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask) for x, y in zip(a, b))
    assert not np.array_equal(a[0].image, c[0].image)
    for sample in a:
        assert sample.image.shape == (96, 96) and set(np.unique(sample.mask)) == {0, 1, 2, 3}
        lv, rv = sample.mask == 3, sample.mask == 1
        assert sample.image[lv].mean() > sample.image[sample.mask == 2].mean() + 60
        assert sample.image[rv].mean() > sample.image[sample.mask == 0].mean() + 40
