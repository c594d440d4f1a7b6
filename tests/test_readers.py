"""The reader registry: every input is a volume (a PNG a one-slice volume of unknown spacing), and a registered
reader is asked before the PNG fallback, so a new format reaches every command without a fork."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cmrseg.data import readers
from cmrseg.data.readers import list_cases, load_volume, read_volumes, reader_for, reads_stacks, register_reader
from cmrseg.data.readers.base import Volume, VolumeCase
from cmrseg.data.readers.png import load_image, load_mask
from cmrseg.data.slicing import load_folder
from cmrseg.data.synth import write_synthetic_dataset
from cmrseg.errors import CmrsegError


@pytest.fixture(scope="module")
def png_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("png") / "set", count=3, seed=1, size=32)


def test_a_png_is_a_one_slice_volume_of_unknown_spacing(png_dir: Path) -> None:
    assert reader_for(png_dir).name == "PNG" and not reads_stacks(png_dir)
    volumes = read_volumes(png_dir)
    assert [v.case for v in volumes] == ["synth1", "synth2", "synth3"]
    first = volumes[0]
    image, mask = load_image(png_dir / "image" / "synth1.png"), load_mask(png_dir / "mask" / "synth1_mask.png")
    assert first.image.shape == (32, 32, 1) and first.spacing is None and first.phase is None and first.single_image
    assert np.array_equal(first.image[:, :, 0], image) and np.array_equal(first.label[:, :, 0], mask)  # type: ignore[index]
    samples = load_folder(png_dir)
    assert [s.id for s in samples] == ["synth1", "synth2", "synth3"]
    assert samples[0].group is None and samples[0].volume is None and np.array_equal(samples[0].image, image)


def test_nifti_folders_and_files_go_to_the_nifti_reader(volumes_dir: Path) -> None:
    assert reader_for(volumes_dir).name == "NIfTI" and reads_stacks(volumes_dir)
    case = list_cases(volumes_dir)[0]
    assert case.reader == "NIfTI" and reader_for(case.image_path).name == "NIfTI"
    assert load_volume(case).spacing is not None


def test_png_options_that_need_stacks_are_refused_naming_the_format(png_dir: Path) -> None:
    with pytest.raises(CmrsegError, match="context_slices 1 needs NIfTI volumes .* this folder holds PNG slices"):
        load_folder(png_dir, context_slices=1)


class _NpyReader:
    """A toy format for the test: ``DIR/*.npy`` stacks (``H x W x Z`` uint8), 2 mm in-plane, 8 mm slices."""

    name, what, stacks = "NPY", "NumPy stacks", True

    def claims(self, path: Path) -> bool:
        return path.is_dir() and any(path.glob("*.npy"))

    def list_cases(self, path: Path, require_labels: bool = True) -> list[VolumeCase]:
        return [VolumeCase(p.stem, p.stem.split("_")[0], p, None, p.stem.split("_")[1], reader=self.name)
                for p in sorted(path.glob("*.npy"))]

    def load(self, case: VolumeCase, with_label: bool = True) -> Volume:
        return Volume(case.case, case.patient, case.phase, np.load(case.image_path), None, np.eye(4), None,
                      (2.0, 2.0, 8.0), case.image_path)


def test_a_registered_reader_is_asked_first_and_reaches_slicing(tmp_path: Path) -> None:
    stack = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)
    np.save(tmp_path / "p1_ED.npy", stack)
    np.save(tmp_path / "p1_ES.npy", stack[::-1].copy())
    before = list(readers.READERS)
    try:
        register_reader(_NpyReader())
        assert reader_for(tmp_path).name == "NPY" and reads_stacks(tmp_path)
        samples = load_folder(tmp_path, require_masks=False, context_slices=1, other_phase=True)
        assert [s.id for s in samples[:3]] == ["p1_ED_z00", "p1_ED_z01", "p1_ED_z02"]
        assert samples[1].image.shape == (6, 5, 6) and samples[1].group == "p1" and samples[1].spacing == (2.0, 2.0, 8.0)
        assert np.array_equal(samples[1].image[:, :, :3], stack) and np.array_equal(samples[1].image[:, :, 3:], stack[::-1])
    finally:
        readers.READERS[:] = before
    assert reader_for(tmp_path).name == "PNG"
