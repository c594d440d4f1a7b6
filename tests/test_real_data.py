"""The real cmr96 data loads through the same reader (skipped cleanly where it is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmrseg.data.dataset import holdout_split
from cmrseg.data.reader import load_folder


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
    from cmrseg.clinical import PhaseLabel, indices_table
    from cmrseg.data.dataset import kfold_split, sample_groups
    from cmrseg.data.reader import load_image
    from cmrseg.data.volumes import load_volume_folder, volume_samples

    volumes = load_volume_folder(acdc_data)
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
