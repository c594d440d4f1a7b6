"""Clinical indices on hand-made label volumes whose ventricle volumes are known exactly, and their agreement."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cmrseg.cli import main
from cmrseg.metrics.clinical import MYOCARDIAL_DENSITY, PhaseLabel, agreement, indices_table
from cmrseg.metrics import diagonal, dice_score, hd95_score
from cmrseg.metrics.volumes import slice_positions, volume_metrics

SPACING = (1.5, 1.25, 8.0)
VOXEL_ML = 1.5 * 1.25 * 8.0 / 1000.0


def _heart(lv: tuple[int, int, int], rv: tuple[int, int, int], myo_voxels_z: int = 0) -> np.ndarray:
    """Labels (20 x 20 x 6): an LV box of ``lv`` voxels, an RV box of ``rv``, and a 1-voxel myocardium ring
    around the LV on its first ``myo_voxels_z`` slices."""
    label = np.zeros((20, 20, 6), np.uint8)
    if myo_voxels_z:
        label[1 : lv[0] + 3, 1 : lv[1] + 3, :myo_voxels_z] = 2
    label[2 : 2 + lv[0], 2 : 2 + lv[1], : lv[2]] = 3
    label[12 : 12 + rv[0], 12 : 12 + rv[1], : rv[2]] = 1
    return label


def _write(folder: Path, case: str, label: np.ndarray, spacing: tuple[float, float, float] | None) -> None:
    image = nib.Nifti1Image(label, np.diag([*(spacing or (1, 1, 1)), 1.0]))
    if spacing:
        image.header.set_zooms(spacing)
        image.header.set_xyzt_units("mm")
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(folder / f"{case}.nii.gz"))


def test_indices_from_boxes_are_exact() -> None:
    ed = PhaseLabel.from_label("p1", "ED", "p1_ED", _heart((6, 5, 4), (4, 4, 5), myo_voxels_z=4), SPACING)
    es = PhaseLabel.from_label("p1", "ES", "p1_ES", _heart((3, 5, 4), (4, 4, 2)), SPACING)
    row = indices_table([ed, es])[0]
    assert row["LV_EDV_voxels"] == 120 and row["LV_ESV_voxels"] == 60
    assert row["LV_EDV_ml"] == pytest.approx(120 * VOXEL_ML) and row["LV_ESV_ml"] == pytest.approx(60 * VOXEL_ML)
    assert row["LV_SV_ml"] == pytest.approx(60 * VOXEL_ML) and row["LV_EF_pct"] == pytest.approx(50.0)
    assert row["RV_EDV_ml"] == pytest.approx(80 * VOXEL_ML) and row["RV_EF_pct"] == pytest.approx(60.0)
    ring = (8 * 7 - 6 * 5) * 4
    assert row["Myo_ED_voxels"] == ring and row["LV_mass_g"] == pytest.approx(ring * VOXEL_ML * MYOCARDIAL_DENSITY)
    assert row["note"] == "" and row["spacing_mm"] == "1.5x1.25x8"


def test_unknown_spacing_and_missing_phase_get_notes_not_numbers() -> None:
    ed = PhaseLabel.from_label("p1", "ED", "a", _heart((6, 5, 4), (4, 4, 5)), None)
    es = PhaseLabel.from_label("p1", "ES", "b", _heart((3, 5, 4), (4, 4, 2)), None)
    lonely = PhaseLabel.from_label("p2", "ED", "c", _heart((6, 5, 4), (4, 4, 5)), SPACING)
    unknown, missing = indices_table([ed, es, lonely])
    assert unknown["LV_EF_pct"] == pytest.approx(50.0) and math.isnan(unknown["LV_EDV_ml"])
    assert math.isnan(unknown["LV_mass_g"]) and "spacing unknown" in unknown["note"]
    assert "no ES volume" in missing["note"] and math.isnan(missing["LV_EF_pct"])


def test_agreement_statistics_by_hand() -> None:
    predicted = [{"patient": f"p{i}", "LV_EF_pct": v} for i, v in enumerate([50.0, 62.0, 30.0, 45.0])]
    truth = [{"patient": f"p{i}", "LV_EF_pct": v} for i, v in enumerate([52.0, 60.0, 33.0, 45.0])]
    stats = agreement(predicted, truth)["LV_EF_pct"]
    diff = np.array([-2.0, 2.0, -3.0, 0.0])
    assert stats["n"] == 4 and stats["bias"] == pytest.approx(-0.75) and stats["mae"] == pytest.approx(1.75)
    assert stats["sd"] == pytest.approx(float(np.std(diff, ddof=1)))
    assert stats["r"] == pytest.approx(float(np.corrcoef([50, 62, 30, 45], [52, 60, 33, 45])[0, 1]))
    assert set(agreement(predicted, truth)) == {"LV_EF_pct"}


def test_indices_command_with_truth_writes_table_agreement_and_plots(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    for index, (ed_lv, es_lv) in enumerate([(6, 3), (8, 4), (5, 4)]):
        patient = f"patient{index + 1:03d}"
        ed, es = _heart((ed_lv, 5, 4), (4, 4, 5), 4), _heart((es_lv, 5, 4), (4, 4, 3))
        _write(truth, f"{patient}_ED_gt", ed, SPACING)
        _write(truth, f"{patient}_ES_gt", es, SPACING)
        _write(truth, f"{patient}_ED", np.zeros_like(ed), SPACING)
        _write(truth, f"{patient}_ES", np.zeros_like(es), SPACING)
        _write(pred, f"{patient}_ED", ed, SPACING)
        _write(pred, f"{patient}_ES", _heart((es_lv + 1, 5, 4), (4, 4, 3)), SPACING)
    out = tmp_path / "out" / "indices.csv"
    assert main(["indices", "--masks", str(pred), "--truth", str(truth), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["patient"] for r in rows] == ["patient001", "patient002", "patient003"]
    assert float(rows[0]["LV_ESV_voxels"]) == 4 * 5 * 4 and float(rows[0]["LV_EDV_ml"]) == pytest.approx(120 * VOXEL_ML)
    for suffix in ("_true.csv", "_agreement.json", "_scatter.png", "_bland_altman.png"):
        assert (tmp_path / "out" / f"indices{suffix}").is_file()
    assert "LV_EF_pct" in capsys.readouterr().out


def test_volume_metrics_by_hand() -> None:
    truth = np.zeros((10, 10, 4), np.uint8)
    truth[2:6, 2:6, 1:3] = 3
    pred = truth.copy()
    pred[2:6, 2:6, 2] = 0
    assert dice_score(pred, truth, 3) == pytest.approx(2 * 16 / (16 + 32))
    assert dice_score(pred, truth, 1) == 1.0 and hd95_score(pred, truth, 1) == 0.0
    assert hd95_score(truth, truth, 3, (1.0, 1.0, 8.0)) == 0.0
    missed = np.zeros_like(truth)
    assert hd95_score(missed, truth, 3, (1.0, 1.0, 8.0)) == pytest.approx(diagonal(truth.shape, (1.0, 1.0, 8.0)))
    metrics = volume_metrics(missed, truth, (1.0, 1.0, 8.0))
    assert metrics["misses"]["LV"] and not metrics["false_detections"]["LV"] and metrics["unit"] == "mm"
    assert diagonal((3, 4, 0), None) == 5.0
    assert slice_positions(6) == ["base", "base", "mid", "mid", "apex", "apex"]
    with pytest.raises(Exception, match="cannot be scored against a mask of shape"):
        dice_score(pred[:, :, :2], truth, 3)


def test_indices_checks_its_outputs_and_manifest_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred = tmp_path / "pred"
    _write(pred, "patient001_ED", _heart((6, 5, 4), (4, 4, 5), 4), SPACING)
    _write(pred, "patient001_ES", _heart((3, 5, 4), (4, 4, 3)), SPACING)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("keep")
    for out, words in ((tmp_path / "folder", "is a folder"), (tmp_path / "file" / "x.csv", "is a file"),
                       (pred / "indices.csv", "inside the input")):
        assert main(["indices", "--masks", str(pred), "--out", str(out)]) == 2
        assert words in capsys.readouterr().err
    (pred / "cases.csv").write_text("a,b\n")
    assert main(["indices", "--masks", str(pred), "--out", str(tmp_path / "x.csv")]) == 2
    assert "expected the columns case, patient, phase" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder", "pred"]
    assert (tmp_path / "file").read_text() == "keep" and not any((tmp_path / "folder").iterdir())
