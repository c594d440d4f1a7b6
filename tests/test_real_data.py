"""The real cmr96 data loads through the same reader (skipped cleanly where it is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmrseg.data.dataset import holdout_split
from cmrseg.data.slicing import load_folder


def test_real_train_and_test_folders_load(real_data: Path) -> None:
    train = load_folder(real_data / "train")
    test = load_folder(real_data / "test", require_masks=False)
    assert len(train) == 100 and len(test) == 80
    assert train[1].id == "cmr2" and test[0].id == "cmr121"
    assert all(s.image.shape == (96, 96) and s.mask is not None and s.mask.max() <= 3 for s in train)
    assert all(s.mask is None for s in test)
    _, val = holdout_split([s.id for s in train], 0.2, seed=0)
    assert len(val) == 20 and all(np.any(s.mask) for s in train)


def test_real_acdc_volumes_load_by_patient_with_the_documented_efs(acdc_data: Path, real_data: Path) -> None:
    from cmrseg.metrics.clinical import PhaseLabel, indices_table
    from cmrseg.data.dataset import kfold_split, sample_groups
    from cmrseg.data.readers.png import load_image
    from cmrseg.data.readers import read_volumes
    from cmrseg.data.slicing import volume_samples

    volumes = read_volumes(acdc_data)
    assert len(volumes) == 100 and {v.phase for v in volumes} == {"ED", "ES"}
    assert all(v.spacing is None and v.image.shape[:2] == (96, 96) for v in volumes)
    samples = volume_samples(volumes)
    assert len(samples) == 952
    first = volumes[0]
    kept = int(first.info["CourseworkSliceED"])
    np.testing.assert_array_equal(first.image[:, :, kept], load_image(real_data / "train" / "image" / f"{first.info['CourseworkED']}.png"))
    train, val = kfold_split([s.id for s in samples], 5, 0, 0, True, sample_groups(samples))
    groups = sample_groups(samples)
    assert not {groups[i] for i in train} & {groups[i] for i in val}
    rows = indices_table(PhaseLabel.from_label(v.patient, v.phase, v.case, v.label, v.spacing, v.info["Group"]) for v in volumes)
    dcm = [r["LV_EF_pct"] for r in rows if r["group"] == "DCM"]
    assert len(rows) == 50 and len(dcm) == 10 and 14 < np.mean(dcm) < 20 and all(r["note"] for r in rows)


def test_real_native_volumes_plan_and_resample_as_documented() -> None:
    """acdc_native (skipped where absent): the plan docs/native.md prints, and a patient's label volume resampled to
    the plan's spacing and back keeps its mL within 2 %."""
    import os

    import pytest

    from cmrseg.data.resample import resize_label, zoom_factors, zoomed_shape
    from cmrseg.data.readers import list_cases, load_volume
    from cmrseg.planning import plan_dataset

    native = Path(os.environ.get("CMRSEG_NATIVE", Path(__file__).resolve().parent.parent.parent / "shared" / "data"
                                 / "acdc_native"))
    if not (native / "patient001" / "Info.cfg").is_file():
        pytest.skip("real acdc_native volumes not found (set CMRSEG_NATIVE or place them at ../shared/data/acdc_native)")
    plan = plan_dataset(native)
    assert plan.target_spacing == [1.5625, 1.5625] and plan.patch_size == [128, 128]
    assert plan.fingerprint is not None and plan.fingerprint.n_patients == 50 and plan.fingerprint.n_volumes == 100
    resampled = [(case, zoom_factors(load_volume(case, with_label=False).spacing, plan.target_spacing))
                 for case in list_cases(native)[:20:2]]
    case, factors = next((case, f) for case, f in resampled if f is not None)  # a patient not on the median grid
    volume = load_volume(case)
    assert volume.label is not None and factors is not None
    back = np.stack([resize_label(resize_label(volume.label[:, :, z], zoomed_shape(volume.label.shape[:2], factors)),
                                  volume.label.shape[:2]) for z in range(volume.n_slices)], axis=-1)
    for value in (1, 2, 3):  # the structure's volume (mL) moves by less than 2 % there and back
        assert abs(int((back == value).sum()) - int((volume.label == value).sum())) <= 0.02 * (volume.label == value).sum()
