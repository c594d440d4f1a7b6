"""Quality control (#27): signals, rules with their reasons, the estimate, calibration, and the outputs that carry them."""

from __future__ import annotations

import csv
import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cmrseg.cli import main
from cmrseg.metrics.clinical import PhaseLabel
from cmrseg.data.synth import write_synthetic_volumes
from cmrseg.data.readers import Volume, list_cases, load_volume
from cmrseg.inference.tta import agreement_counts, flip_average
from cmrseg.plots import montage
from cmrseg.qc import CHECK, FEATURES, PASS, QcModel, assess, features, volume_signals
from cmrseg.qc.model import cross_validated, fit
from cmrseg.qc.signals import view_dice

from conftest import volume_run_fixture

qc_run = volume_run_fixture("qc_run", {"name": "UNet", "depths": 2, "features": 8}, "A tiny U-Net for QC.")


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> tuple[Volume, Volume]:
    """ED and ES of a phantom patient (96 x 96, spacing unknown: volumes in voxels), with their true labels."""
    data = write_synthetic_volumes(tmp_path_factory.mktemp("qc") / "data", patients=1, seed=3, slices=(5, 5), spacing=None)
    ed, es = (load_volume(case) for case in list_cases(data))
    assert (ed.phase, es.phase) == ("ED", "ES")
    return ed, es


def perfect_signals(label: np.ndarray) -> dict:
    """Signals of a prediction that is certain (one-hot probabilities) and on which every flip view agrees."""
    probs = np.eye(4, dtype=np.float32)[label].transpose(3, 0, 1, 2)
    counts = [np.array([[4.0 * (label[:, :, z] == c).sum(), 8.0 * (label[:, :, z] == c).sum()] for c in (1, 2, 3)])
              for z in range(label.shape[2])]
    return volume_signals(probs, label, counts)


def judge(ed: Volume, es: Volume, ed_label: np.ndarray, es_label: np.ndarray) -> dict:
    """QC of one patient whose ED and ES are predicted as ``ed_label`` and ``es_label``."""
    signals = {ed.case: perfect_signals(ed_label), es.case: perfect_signals(es_label)}
    phases = [PhaseLabel.from_volume(ed, ed_label), PhaseLabel.from_volume(es, es_label)]
    result = assess(signals, phases)
    return {**result.cases, "patient": result.patients[ed.patient]}


def test_a_perfect_prediction_passes(patient: tuple[Volume, Volume]) -> None:
    ed, es = patient
    verdict = judge(ed, es, ed.label, es.label)
    for case in (ed.case, es.case):
        assert verdict[case]["qc_flag"] == PASS and verdict[case]["qc_reasons"] == ""
        assert verdict[case]["qc_dice"] >= 0.85  # the best the default model saw in calibration: about 0.90
    assert verdict["patient"] == {"qc_flag": PASS, "qc_reasons": ""}


def _without_rv(label: np.ndarray) -> np.ndarray:
    return np.where(label == 1, 0, label).astype(np.uint8)


def _open_lv(label: np.ndarray) -> np.ndarray:
    """The myocardium removed right of the LV's centre: half the cavity's border then touches background."""
    columns = np.nonzero(label == 3)[1]
    cut = label.copy()
    cut[:, int(columns.mean()):, :][cut[:, int(columns.mean()):, :] == 2] = 0
    return cut


def _gap(label: np.ndarray) -> tuple[np.ndarray, int]:
    """Every structure erased on a slice between slices that have the LV."""
    with_lv = np.flatnonzero((label == 3).any(axis=(0, 1)))
    z = int(with_lv[len(with_lv) // 2])
    assert with_lv[0] < z < with_lv[-1]
    cut = label.copy()
    cut[:, :, z] = 0
    return cut, z


def _pumping(ed_label: np.ndarray) -> np.ndarray:
    """An ES that keeps only 5 % of the ED's LV cavity (the rest turned to myocardium): EF 95 %."""
    es = ed_label.copy()
    lv = np.flatnonzero(es == 3)
    es.flat[lv[len(lv) // 20:]] = 2
    return es


@pytest.mark.parametrize("defect, words", [
    ("missing", "RV missing"),
    ("open", "LV not enclosed by myocardium"),
    ("gap", "LV absent on slice"),
    ("swapped", "LV ED volume below ES"),
    ("ef", "LV EF 95 % above 90 %"),
])
def test_defects_are_flagged_with_their_reason(patient: tuple[Volume, Volume], defect: str, words: str) -> None:
    ed, es = patient
    ed_label, es_label = ed.label, es.label
    if defect == "missing":
        ed_label = _without_rv(ed_label)
    elif defect == "open":
        ed_label = _open_lv(ed_label)
    elif defect == "gap":
        ed_label, z = _gap(ed_label)
        words = f"LV absent on slice {z} between slices that have it"
    elif defect == "swapped":
        ed_label, es_label = es_label, ed_label
    else:
        es_label = _pumping(ed_label)
    verdict = judge(ed, es, ed_label, es_label)
    flagged = ed.case if defect in ("missing", "open", "gap") else es.case
    assert verdict[flagged]["qc_flag"] == CHECK
    assert words in verdict[flagged]["qc_reasons"]
    assert verdict["patient"]["qc_flag"] == CHECK and verdict["patient"]["qc_reasons"]
    if defect in ("missing", "open", "gap"):  # a volume rule names that volume only
        assert words not in verdict[es.case]["qc_reasons"]
    else:  # a patient rule flags both phases
        assert words in verdict[ed.case]["qc_reasons"] and words in verdict["patient"]["qc_reasons"]


def test_volumes_out_of_range_are_flagged_when_the_spacing_is_known() -> None:
    from cmrseg.qc import patient_reasons

    row = {"LV_EDV_voxels": 900, "LV_ESV_voxels": 400, "LV_EF_pct": 55.6, "RV_EDV_voxels": 9000, "RV_ESV_voxels": 4000,
           "RV_EF_pct": 55.6, "LV_EDV_ml": 120.0, "LV_ESV_ml": 53.0, "RV_EDV_ml": 1084.0, "RV_ESV_ml": 480.0}
    assert patient_reasons(row) == ["RV EDV 1,084 mL outside 10-500 mL"]


def test_signals_measure_uncertainty_and_view_disagreement(patient: tuple[Volume, Volume]) -> None:
    label = patient[0].label
    sure = volume_signals(np.eye(4, dtype=np.float32)[label].transpose(3, 0, 1, 2), label)
    assert sure["margin"] == 1.0 and sure["uncertain"] == 0.0 and np.isnan(sure["view_dice"])
    vague = np.full((4, *label.shape), 0.25, np.float32)
    assert volume_signals(vague, label)["uncertain"] == 1.0
    # four views of two images: two views agree with the mean, two predict nothing
    probs = torch.zeros(4, 2, 4, 8, 8)
    probs[:, :, 0] = 1.0
    probs[:2, :, 3, :4, :4], probs[:2, :, 0, :4, :4] = 1.0, 0.0
    mean = probs.mean(dim=0)
    mean[:, 3, :4, :4] += 0.01  # the consensus keeps the LV square
    counts = agreement_counts(probs, mean)
    assert counts.shape == (2, 3, 2)
    # LV: 2 of 4 views agree with the consensus (Dice 1), 2 predict nothing (Dice 0); RV and Myo absent everywhere
    assert view_dice(list(counts.numpy())) == pytest.approx((1.0 + 1.0 + 2 * 2 * 4 / (2 * 4 + 4 * 4)) / 3)


def test_voxels_the_clean_up_removed_are_counted(patient: tuple[Volume, Volume]) -> None:
    from cmrseg.inference.volume_prediction import volume_mask

    label = patient[0].label
    probs = np.eye(4, dtype=np.float32)[label].transpose(3, 0, 1, 2)
    assert volume_signals(probs, volume_mask(probs, True))["relabelled"] == 0.0
    stray = probs.copy()
    stray[:, :4, :4, :] = np.array([0, 0, 0, 1], np.float32)[:, None, None, None]  # an LV blob in a corner
    cleaned = volume_mask(stray, True)
    assert not (cleaned[:4, :4] == 3).any()
    drawn = (stray.argmax(axis=0) > 0).sum()
    assert volume_signals(stray, cleaned)["relabelled"] == pytest.approx(4 * 4 * label.shape[2] / drawn)


def test_flip_average_with_agreement_gives_the_same_probabilities() -> None:
    torch.manual_seed(0)
    network = torch.nn.Conv2d(1, 4, 3, padding=1)
    batch = torch.rand(3, 1, 16, 16)
    kept: list[torch.Tensor] = []
    with torch.no_grad():
        plain, recorded = flip_average(network, batch), flip_average(network, batch, agreement=kept)
    torch.testing.assert_close(plain, recorded)
    assert len(kept) == 1 and kept[0].shape == (3, 3, 2)


def _ensemble_predictor(members: list[torch.nn.Module], tta: bool) -> "ModelPredictor":
    """A predictor of the soft-voting ensemble of ``members`` (one input channel each, images scaled to [0, 1])."""
    from cmrseg.data.input_spec import InputSpec
    from cmrseg.data.normalization import MemberNormalization, Normalization
    from cmrseg.inference import ModelPredictor
    from cmrseg.models.voting import EnsembleNet

    identity = Normalization("dataset", 0.0, 1.0)
    network = EnsembleNet(members, [MemberNormalization.from_normalization(identity) for _ in members],
                          [1.0] * len(members), [(1, [0]) for _ in members])
    return ModelPredictor(network, InputSpec(normalization=identity), torch.device("cpu"), tta=tta,
                          record_agreement=True)


@pytest.mark.parametrize("tta", [False, True])
def test_ensemble_members_agreement_is_measured_without_changing_the_prediction(tta: bool) -> None:
    torch.manual_seed(0)
    one, other = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Conv2d(1, 4, 3, padding=1)
    images = [np.random.default_rng(i).integers(0, 255, (24, 20), dtype=np.uint8) for i in range(3)]
    same = _ensemble_predictor([one, one], tta)
    differ = _ensemble_predictor([one, other], tta)
    recorded = differ.predict_proba(images)
    differ.record_agreement = False
    for got, plain in zip(recorded, differ.predict_proba(images), strict=True):
        np.testing.assert_allclose(got, plain, rtol=1e-6, atol=1e-7)
    assert differ.member_agreement is None
    probs = same.predict_proba(images)
    differ.record_agreement = True
    differ.predict_proba(images)
    assert len(same.member_agreement) == len(differ.member_agreement) == 3
    for counts in same.member_agreement:  # identical members: every member pixel agrees with the consensus
        np.testing.assert_array_equal(2 * counts[:, 0], counts[:, 1])
    if not tta:  # one view: each of the 2 members overlaps the consensus on its foreground (every 2nd pixel counted)
        foreground = [(p.argmax(axis=0)[::2, ::2] == c).sum() for p in probs[:1] for c in (1, 2, 3)]
        np.testing.assert_array_equal(same.member_agreement[0][:, 0], 2 * np.array(foreground))
    identical = volume_signals(None, np.zeros((24, 20, 3), np.uint8), members=same.member_agreement)
    disagreeing = volume_signals(None, np.zeros((24, 20, 3), np.uint8), members=differ.member_agreement)
    assert identical["member_dice"] == 1.0 and identical["member_dice_min"] == 1.0
    assert disagreeing["member_dice"] < 0.95 and disagreeing["member_dice_min"] <= disagreeing["member_dice"]
    from cmrseg.qc.model import MEMBER_FEATURES

    assert set(MEMBER_FEATURES) <= set(FEATURES) and np.isfinite(features(disagreeing, MEMBER_FEATURES)).all()


def test_a_single_network_has_no_member_agreement() -> None:
    from cmrseg.data.input_spec import InputSpec
    from cmrseg.data.normalization import Normalization
    from cmrseg.inference import ModelPredictor

    predictor = ModelPredictor(torch.nn.Conv2d(1, 4, 3, padding=1), InputSpec(normalization=Normalization("per_image")),
                               torch.device("cpu"), tta=True, record_agreement=True)
    predictor.predict_proba([np.zeros((16, 16), np.uint8)])
    assert predictor.agreement is not None and predictor.member_agreement is None
    assert np.isnan(volume_signals(None, np.zeros((16, 16, 1), np.uint8))["member_dice"])


def test_regression_recovers_a_quadratic_truth_cross_validated_by_patient() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURES)))
    x[:5, 0] = np.nan  # volumes predicted without TTA: no view agreement
    y = 0.7 + 0.05 * np.nan_to_num(x[:, 0]) - 0.03 * x[:, 2] - 0.02 * x[:, 2] ** 2
    groups = [f"p{i // 2}" for i in range(400)]
    linear, _ = cross_validated(x, y, groups, folds=5, alpha=0.01, squares=False)
    assert np.abs(linear - y)[5:].mean() > 0.01  # a straight line misses the curve
    held_out, structures = cross_validated(x, y, groups, folds=5, alpha=0.01)
    assert np.isnan(structures).all()  # a model of the mean only
    # within 0.01 wherever the held-out values lie inside the range the other folds were fitted on (outside it the
    # columns are clipped to that range: no extrapolated curve)
    assert np.quantile(np.abs(held_out - y)[5:], 0.98) < 0.01
    assert np.abs(held_out - y)[:5].max() < 0.02  # unknown = the column's mean, here about 0
    model = fit(x, y, alpha=0.01)
    again = QcModel.from_dict(model.to_dict())
    np.testing.assert_allclose(again.predict(x), model.predict(x))
    with pytest.raises(Exception, match="not a cmrseg QC model"):
        QcModel.from_dict({"format": "other"})


def test_no_estimate_leaves_the_dice_range_of_its_calibration_volumes() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3))
    y = np.clip(0.8 + 0.1 * x[:, :1] + np.array([[0.0, -0.05, 0.05]]), 0.5, 0.9)  # true Dice never above 0.9
    model = fit(x, y, alpha=0.01, names=FEATURES[:3], squares=False)
    assert model.target_high == pytest.approx(y.max(axis=0).tolist()) and model.target_low == pytest.approx(y.min(axis=0).tolist())
    far = np.array([[6.0, 0.0, 0.0], [-6.0, 0.0, 0.0]])  # beyond the data at both ends
    unbounded = dataclasses.replace(model, target_low=None, target_high=None)
    assert unbounded.predict_structures(far)["RV"][0] > 0.95  # the line alone would promise more than any volume had
    per = model.predict_structures(far)
    for k, name in enumerate(("RV", "Myo", "LV")):
        assert per[name][0] == pytest.approx(y[:, k].max()) and per[name][1] >= y[:, k].min() - 1e-12
    assert model.predict(far)[0] == pytest.approx(y.max(axis=0).mean())
    stored = model.to_dict()
    assert stored["format_version"] == 4 and QcModel.from_dict(stored).predict(far) == pytest.approx(model.predict(far))
    # a format-3 model (no target range) still loads and predicts as it did: unclipped but for [0, 1]
    older = {**stored, "format_version": 3}
    del older["target_low"], older["target_high"]
    assert QcModel.from_dict(older).predict_structures(far)["RV"][0] == 1.0
    with pytest.raises(Exception, match="format_version 5, expected 4"):
        QcModel.from_dict({**stored, "format_version": 5})
    with pytest.raises(Exception, match="one weight per feature and target"):
        QcModel.from_dict({**stored, "target_high": [0.9]})


def test_calibrate_predicts_true_dice_within_tolerance_and_ships_with_the_export(
        qc_run: Path, volumes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cmrseg.qc.calibrate import calibrate

    result = calibrate(qc_run, volumes_dir, progress=False)
    # tolerance: held-out patients' predicted mean Dice within 0.10 of the truth on average (8 phantom volumes)
    assert result["cv"]["n"] == 8 and result["cv"]["mae"] <= 0.10
    rows = result["per_volume"]
    assert all(abs(r["qc_dice_cv"] - r["true_dice"]) <= 0.25 for r in rows)
    stored = QcModel.from_dict(__import__("json").loads((qc_run / "qc_model.json").read_text()))
    assert stored.cv["n"] == 8 and stored.source["n_volumes"] == 8
    assert main(["export", "--run", str(qc_run), "--out", str(tmp_path / "model.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        assert "qc_model.json" in archive.namelist()
    # predict writes the calibrated estimate, flag and reasons; indices.csv the patient's flag
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(tmp_path / "model.zip"), "--images", str(volumes_dir), "--out", str(out),
                 "--indices", "--qc-threshold", "0.5", "--tta"]) == 0
    with (out / "cases.csv").open() as handle:
        cases = list(csv.DictReader(handle))
    assert len(cases) == 8 and all(0.0 <= float(c["qc_dice"]) <= 1.0 and c["qc_flag"] in (PASS, CHECK) for c in cases)
    assert all((c["qc_flag"] == CHECK) == bool(c["qc_reasons"]) for c in cases)
    assert all(("below 0.50" in c["qc_reasons"]) == (float(c["qc_dice"]) < 0.5) for c in cases)
    with (out / "indices.csv").open() as handle:
        patients = list(csv.DictReader(handle))
    assert len(patients) == 4 and all(p["qc_flag"] in (PASS, CHECK) for p in patients)
    # evaluate reports the estimate beside the true Dice
    capsys.readouterr()
    assert main(["evaluate", "--run", str(qc_run), "--data", str(volumes_dir)]) == 0
    assert "quality control (docs/qc.md): predicted vs true mean Dice per volume: MAE" in capsys.readouterr().out


@pytest.mark.parametrize("kind, words", [("one case", "at least 3 patients, got 1 volume of 1"),
                                         ("no labels", "no label volume found")])
def test_calibrate_bad_input_is_a_one_line_error(qc_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 kind: str, words: str) -> None:
    data = write_synthetic_volumes(tmp_path / "data", patients=1 if kind == "one case" else 3, size=32, slices=(3, 3),
                                   layout="flat", with_labels=kind != "no labels")
    if kind == "one case":
        for path in data.glob("*_ES*"):
            path.unlink()
    before = (qc_run / "qc_model.json").read_bytes() if (qc_run / "qc_model.json").exists() else None
    assert main(["qc", "calibrate", "--run", str(qc_run), "--data", str(data), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err
    assert ((qc_run / "qc_model.json").read_bytes() if before is not None else None) == before


def test_bad_qc_threshold_is_refused_before_predicting(qc_run: Path, volumes_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--run", str(qc_run), "--images", str(volumes_dir), "--out", str(tmp_path / "p"),
                 "--qc-threshold", "85"]) == 2
    assert "--qc-threshold 85" in capsys.readouterr().err and not (tmp_path / "p").exists()


def test_montage_outlines_numbers_and_truth_beside(patient: tuple[Volume, Volume]) -> None:
    ed = patient[0]
    alone, paired = montage(ed.image, ed.label), montage(ed.image, ed.label, truth=ed.label)
    assert alone.dtype == np.uint8 and alone.ndim == 3 and paired.shape[1] > alone.shape[1]
    tile = 2  # 96-pixel phantoms are magnified 2x
    # inside the LV (away from its outline) the image is shown as it is, in gray
    rows, cols = np.nonzero(ed.label[:, :, 0] == 3)
    r, c = int(np.median(rows)), int(np.median(cols))
    pixel = alone[r * tile + 1, c * tile + 1]
    assert pixel[0] == pixel[1] == pixel[2] == ed.image[r, c, 0]
    # outline colours are present: RV red, Myo green, LV blue
    for color in ([230, 60, 60], [60, 200, 90], [70, 120, 240]):
        assert (alone == color).all(axis=-1).any()


def _structure_model() -> QcModel:
    """A per-structure model fitted on made-up volumes whose each structure's true Dice follows that structure's
    flip-view agreement and margin (as a calibration on real volumes finds): what the test below needs to see the
    signals of one corrupted structure carried into that structure's estimate."""
    rng = np.random.default_rng(1)
    rows, truth = [], []
    for _ in range(80):
        quality = rng.uniform(0.5, 1.0, size=3)
        signals = {"missing": [], "gaps": {}, "rv_apart": [], "lv_enclosure": 1.0, "rv_lv": 0.0, "myo_lv": 0.0,
                   "foreground": 0.1, "uncertain": float(1 - quality.mean()), "margin": float(quality.mean()),
                   "view_dice": float(quality.mean()), "view_dice_min": float(quality.min())}
        for name, q in zip(("RV", "Myo", "LV"), quality, strict=True):
            signals[f"view_dice_{name}"], signals[f"margin_{name}"] = float(q), float(q)
        rows.append(features(signals))
        truth.append(quality * 0.9)
    return fit(np.stack(rows), np.array(truth), alpha=0.1)


def test_a_corrupted_structure_gets_the_lower_estimate_and_a_check_with_its_reason(patient: tuple[Volume, Volume]) -> None:
    ed = patient[0]
    label = ed.label
    clean = perfect_signals(label)
    probs = np.eye(4, dtype=np.float32)[label].transpose(3, 0, 1, 2)
    rv = label == 1
    probs[:, rv] = np.array([0.4, 0.45, 0.1, 0.05], np.float32)[:, None]  # the RV a near coin toss
    counts = [np.array([[2.0 * (label[:, :, z] == c).sum() if c == 1 else 4.0 * (label[:, :, z] == c).sum(),
                         8.0 * (label[:, :, z] == c).sum()] for c in (1, 2, 3)]) for z in range(label.shape[2])]
    corrupted = volume_signals(probs, label, counts)  # flip views agree on half the RV only
    assert corrupted["view_dice_RV"] == pytest.approx(0.5) and corrupted["view_dice_LV"] == 1.0
    assert corrupted["margin_RV"] == pytest.approx(0.05) and corrupted["margin_LV"] == 1.0
    model = _structure_model()
    phases = [PhaseLabel.from_volume(ed, label)]
    good, bad = (assess({ed.case: s}, phases, model).cases[ed.case] for s in (clean, corrupted))
    assert good["qc_flag"] == PASS and min(good[f"qc_dice_{n}"] for n in ("RV", "Myo", "LV")) > 0.8
    assert bad["qc_dice_RV"] < 0.6 and good["qc_dice_RV"] - bad["qc_dice_RV"] > 0.3  # the RV's estimate falls ...
    assert min(bad["qc_dice_Myo"], bad["qc_dice_LV"]) > max(0.8, bad["qc_dice_RV"] + 0.2)  # ... the others' stay high
    assert bad["qc_dice"] == pytest.approx(np.mean([bad[f"qc_dice_{n}"] for n in ("RV", "Myo", "LV")]), abs=1e-6)
    assert bad["qc_flag"] == CHECK and f"predicted RV Dice {bad['qc_dice_RV']:.2f} below 0.60" in bad["qc_reasons"]
    assert "Myo Dice" not in bad["qc_reasons"] and "LV Dice" not in bad["qc_reasons"]


def test_a_model_stored_before_per_structure_estimates_still_predicts_the_mean() -> None:
    from cmrseg.qc.model import FEATURES_V1

    old = {"format": "cmrseg-qc-model", "format_version": 1, "mean": [0.0] * 11, "scale": [1.0] * 11,
           "coef": [0.1] + [0.0] * 10, "intercept": 0.5, "features": list(FEATURES_V1), "alpha": 10.0,
           "cv": {"n": 8}, "source": {}}
    model = QcModel.from_dict(old)
    signals = {"missing": [], "gaps": {}, "rv_apart": [], "view_dice": 1 - np.exp(-1.0) + 0.01}  # log(1 - v + .01) = -1
    x = model.inputs({**{name: 0.0 for name in FEATURES_V1}, **signals})[None]
    assert model.predict(x)[0] == pytest.approx(0.5 - 0.1) and model.predict_structures(x) == {}
    verdict = assess({"c": {**{name: 0.0 for name in FEATURES_V1}, **signals, "lv_enclosure": 1.0}}, [], model, 0.45)
    assert set(verdict.cases["c"]) == {"qc_dice", "qc_flag", "qc_reasons"}
    assert verdict.cases["c"]["qc_reasons"] == "predicted Dice 0.40 below 0.45"
    with pytest.raises(Exception, match="expected names of"):
        QcModel.from_dict({**old, "features": ["made_up", *FEATURES_V1[1:]]})


def test_png_predictions_carry_quality_control(slice_run: Path, synth_dir: Path, tmp_path: Path) -> None:
    import shutil

    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((synth_dir / "image").glob("*.png"))[:3]:
        shutil.copy(path, images / path.name)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(images / "blank.png")  # nothing to segment
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(slice_run), "--images", str(images), "--out", str(out), "--tta"]) == 0
    with (out / "cases.csv").open() as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert sorted(rows) == ["blank", "synth1", "synth10", "synth11"]
    assert all(0.0 <= float(r["qc_dice"]) <= 1.0 and r["qc_flag"] in (PASS, CHECK) for r in rows.values())
    assert all((r["qc_flag"] == CHECK) == bool(r["qc_reasons"]) for r in rows.values())
    blank = rows["blank"]
    assert blank["qc_flag"] == CHECK and "LV missing" in blank["qc_reasons"]
