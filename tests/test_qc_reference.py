"""The QC reference model (``--qc-reference``): a second model's agreement as a QC signal (issue #27)."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from cmrseg.cli import main
from cmrseg.errors import CmrsegError
from cmrseg.qc.model import DEFAULT_MODEL, DEFAULT_REFERENCE_MODEL, REFERENCE_FEATURES, model_for, uses_reference
from cmrseg.qc.reference import resolve_reference
from cmrseg.qc.signals import mask_agreement, volume_signals

from conftest import volume_run_fixture

reference_run = volume_run_fixture("reference_run", {"name": "UNet", "depths": 2, "features": 8},
                                   "A tiny U-Net to predict with and to be its own QC reference.")


def test_mask_agreement_is_each_structures_dice_by_hand() -> None:
    mine = np.zeros((6, 6, 2), np.uint8)
    theirs = np.zeros_like(mine)
    mine[0:2, 0:2, 0] = 1  # RV: 4 voxels, 2 shared with theirs (4 voxels): Dice 2 * 2 / 8 = 0.5
    theirs[1:3, 0:2, 0] = 1
    mine[3:5, 3:5, 1] = 3  # LV: 4 voxels, the reference has none: Dice 0
    counts = mask_agreement(mine, theirs)
    assert counts.tolist() == [[2.0, 8.0], [0.0, 0.0], [0.0, 4.0]]
    signals = volume_signals(None, mine, reference=theirs)
    assert signals["reference_voxels"] == {"RV": 4, "Myo": 0, "LV": 0}
    # Myo is absent from both: they agree (1), as the flip views' agreement counts it
    assert (signals["reference_dice_RV"], signals["reference_dice_Myo"], signals["reference_dice_LV"]) == (0.5, 1.0, 0.0)
    assert signals["reference_dice"] == pytest.approx(0.5) and signals["reference_dice_min"] == 0.0
    assert all(math.isnan(volume_signals(None, mine)[name]) for name in REFERENCE_FEATURES)
    with pytest.raises(ValueError, match="same grid"):
        mask_agreement(mine, theirs[:5])


def test_the_default_model_follows_the_reference_and_a_calibrated_one_must_match() -> None:
    assert model_for(None, False) is DEFAULT_MODEL and not uses_reference(DEFAULT_MODEL)
    assert model_for(None, True) is DEFAULT_REFERENCE_MODEL and uses_reference(DEFAULT_REFERENCE_MODEL)
    assert model_for(DEFAULT_REFERENCE_MODEL, True) is DEFAULT_REFERENCE_MODEL
    with pytest.raises(CmrsegError, match="calibrated with a reference model .*pass the same --qc-reference"):
        model_for(DEFAULT_REFERENCE_MODEL, False, "runs/x")
    with pytest.raises(CmrsegError, match="calibrated without a reference model .*leave --qc-reference out"):
        model_for(DEFAULT_MODEL, True, "runs/x")


def test_the_reference_estimate_follows_the_agreement() -> None:
    """The shipped default model with a reference: less agreement, lower estimate, all else equal."""
    from cmrseg.qc.model import features

    signals = {"missing": [], "gaps": {}, "rv_apart": [], "view_dice": 0.95, "view_dice_min": 0.9, "margin": 0.9,
               "uncertain": 0.05, "rv_lv": -0.2, "myo_lv": 0.1, "foreground": 0.02, "lv_enclosure": 1.0,
               "relabelled": 0.01, **{f"view_dice_{s}": 0.95 for s in ("RV", "Myo", "LV")},
               **{f"margin_{s}": 0.9 for s in ("RV", "Myo", "LV")}}
    estimates = []
    for agreement in (0.95, 0.7, 0.3):
        values = {"reference_dice": agreement, "reference_dice_min": agreement,
                  **{f"reference_dice_{s}": agreement for s in ("RV", "Myo", "LV")}}
        x = features({**signals, **values}, DEFAULT_REFERENCE_MODEL.features)[None]
        estimates.append(float(DEFAULT_REFERENCE_MODEL.predict(x)[0]))
    assert estimates[0] > estimates[1] > estimates[2]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_run_that_is_its_own_reference_agrees_fully(reference_run: Path, volumes_dir: Path, tmp_path: Path,
                                                      workers: str) -> None:
    """In this process and in worker processes, which load the reference themselves."""
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(reference_run), "--images", str(volumes_dir), "--out", str(out), "--tta",
                 "--qc-reference", str(reference_run), "--workers", workers]) == 0
    with (out / "cases.csv").open() as handle:
        cases = list(csv.DictReader(handle))
    assert len(cases) == 8 and all(c["qc_reference_dice"] == "1.000" for c in cases)
    assert all(0.0 <= float(c["qc_dice"]) <= 1.0 for c in cases)
    plain = tmp_path / "plain"
    assert main(["predict", "--run", str(reference_run), "--images", str(volumes_dir), "--out", str(plain)]) == 0
    with (plain / "cases.csv").open() as handle:
        assert all(c["qc_reference_dice"] == "" for c in csv.DictReader(handle))


@pytest.mark.parametrize("value, words", [("no/such/run", "no such run folder or export zip, nor a shipped model "
                                                          "(shipped: acdc-native-unet"),
                                          ("acdc-native-unet-xl", "nor a shipped model")])
def test_a_bad_reference_is_a_one_line_error_before_anything_is_written(
        reference_run: Path, volumes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str,
        words: str) -> None:
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(reference_run), "--images", str(volumes_dir), "--out", str(out),
                 "--qc-reference", value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--qc-reference {value}" in err and words in err
    assert not out.exists()


def test_png_slices_refuse_a_reference(slice_run: Path, synth_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(slice_run), "--images", str(synth_dir / "image"), "--out", str(out),
                 "--qc-reference", str(slice_run)]) == 2
    assert "checks NIfTI volumes, not PNG slices" in capsys.readouterr().err and not out.exists()


def test_a_run_calibrated_with_a_reference_needs_it(reference_run: Path, volumes_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    assert main(["qc", "calibrate", "--run", str(run), "--data", str(volumes_dir), "--quiet", "--tta",
                 "--qc-reference", str(reference_run)]) == 0
    from cmrseg.qc.predict import run_qc_model

    model = run_qc_model(run)
    assert model is not None and uses_reference(model) and model.source["reference"] == str(reference_run)
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--data", str(volumes_dir)]) == 2
    assert "pass the same --qc-reference" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(run), "--data", str(volumes_dir), "--tta",
                 "--qc-reference", str(reference_run)]) == 0


def test_the_shipped_reference_is_found_by_name_and_an_onnx_graph_is_refused(tmp_path: Path) -> None:
    from cmrseg.pretrained_models import pretrained_path

    assert resolve_reference("acdc-native-unet-qc") == pretrained_path("acdc-native-unet-qc")
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"")
    with pytest.raises(CmrsegError, match="ONNX graph cannot be a reference"):
        resolve_reference(graph)


def _phase(phase: str, lv: int) -> "PhaseLabel":
    from cmrseg.metrics.clinical import PhaseLabel

    return PhaseLabel("p1", phase, f"p1_{phase}", {"RV": 900, "Myo": 800, "LV": lv}, (1.0, 1.0, 10.0))


@pytest.mark.parametrize("reference_es, flagged", [(500, False), (400, False), (390, True), (700, True)])
def test_an_lv_ef_far_from_the_reference_models_flags_the_patient(reference_es: int, flagged: bool) -> None:
    """Predicted LV EF 50 % (1000 -> 500 voxels); the reference's ED 1000, ES ``reference_es``: EF 50, 60, 61, 30 %."""
    from cmrseg.qc import assess

    phases = [_phase("ED", 1000), _phase("ES", 500)]
    signals = {}
    for p, lv in zip(phases, (1000, reference_es), strict=True):
        label = np.zeros((4, 4, 1), np.uint8)
        signals[p.case] = {**volume_signals(None, label, reference=label),
                           "reference_voxels": {"RV": 900, "Myo": 800, "LV": lv}}
    result = assess(signals, phases)
    reason = f"LV EF 50 % where the reference model measures {100 * (1000 - reference_es) / 1000:.0f} %"
    assert (reason in result.patients["p1"]["qc_reasons"]) == flagged
    assert all((reason in result.cases[p.case]["qc_reasons"]) == flagged for p in phases)


def test_no_qc_reference_skips_the_shipped_models_own(volumes_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pred"
    assert main(["predict", "--images", str(volumes_dir), "--out", str(out), "--no-qc-reference", "--no-tta"]) == 0
    assert "QC reference" not in capsys.readouterr().out
    with (out / "cases.csv").open() as handle:
        assert all(row["qc_reference_dice"] == "" for row in csv.DictReader(handle))
    with pytest.raises(SystemExit) as stopped:
        main(["predict", "--images", str(volumes_dir), "--out", str(tmp_path / "x"), "--no-qc-reference",
              "--qc-reference", "acdc-native-unet-qc"])
    assert stopped.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_the_report_checks_volumes_with_the_reference(reference_run: Path, volumes_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "report.html"
    assert main(["report", str(reference_run), "--data", str(volumes_dir), "--out", str(page),
                 "--qc-reference", str(reference_run)]) == 0
    assert "with the agreement of a QC reference model" in page.read_text()
    assert main(["report", str(reference_run), "--data", str(volumes_dir), "--out", str(tmp_path / "plain.html")]) == 0
    assert "QC reference" not in (tmp_path / "plain.html").read_text()
