"""NIfTI volume datasets: layouts, splits by patient, bad input, prediction round trip, per-volume evaluation."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cmrseg.cli import main
from cmrseg.config import config_from_dict
from cmrseg.data.dataset import prepare_data
from cmrseg.data.slicing import load_folder
from cmrseg.data.synth import SYNTH_SPACING, write_synthetic_volumes
from cmrseg.data.readers import list_cases, load_volume, read_volumes
from cmrseg.data.readers.layouts import is_volume_dataset
from cmrseg.errors import CmrsegError
from cmrseg.data.resample import zoom_factors

from conftest import tiny_config_dict


@pytest.fixture(scope="module")
def acdc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ACDC-layout phantoms: 6 patients, ED (frame01) and ES (frame10), 48x48 slices, 1.6 x 1.6 x 8 mm."""
    return write_synthetic_volumes(tmp_path_factory.mktemp("vol") / "acdc", patients=6, seed=4, size=48, slices=(4, 6))


@pytest.fixture(scope="module")
def volume_run(acdc_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny U-Net trained for 1 epoch on the phantom volumes (holdout split by patient)."""
    config = config_from_dict(tiny_config_dict(acdc_dir, epochs=1, postprocess={"largest_component": True}))
    run_dir = tmp_path_factory.mktemp("vrun") / "run"
    from cmrseg.training.trainer import train

    train(config, run_dir, progress=False)
    return run_dir


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None, zooms: tuple[float, ...] | None = None) -> None:
    image = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    if zooms is not None:
        image.header.set_zooms(zooms)
        image.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_acdc_layout_reads_phases_spacing_and_slices(acdc_dir: Path) -> None:
    cases = list_cases(acdc_dir)
    assert len(cases) == 12 and is_volume_dataset(acdc_dir)
    assert [c.phase for c in cases[:2]] == ["ED", "ES"] and cases[0].patient == "patient001"
    volume = load_volume(cases[0])
    assert volume.spacing == pytest.approx(SYNTH_SPACING)
    assert volume.image.dtype == np.uint8 and volume.label.shape == volume.image.shape
    samples = load_folder(acdc_dir)
    first = [s for s in samples if s.volume == cases[0].case]
    assert len(first) == volume.n_slices and first[0].group == "patient001"
    np.testing.assert_array_equal(first[1].image, volume.image[:, :, 1])
    np.testing.assert_array_equal(first[1].mask, volume.label[:, :, 1])


@pytest.mark.parametrize("layout", ["flat", "nnunet"])
def test_flat_and_nnunet_layouts_give_the_same_volumes(tmp_path: Path, layout: str) -> None:
    acdc = read_volumes(write_synthetic_volumes(tmp_path / "a", 2, seed=1, size=32, slices=(3, 3)))
    other = read_volumes(write_synthetic_volumes(tmp_path / "b", 2, seed=1, size=32, layout=layout, slices=(3, 3)))
    assert [(v.patient, v.phase) for v in other] == [(v.patient, v.phase) for v in acdc]
    for a, b in zip(acdc, other, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)


def test_every_split_keeps_a_patient_on_one_side(acdc_dir: Path) -> None:
    for fold in range(3):
        config = config_from_dict(tiny_config_dict(acdc_dir, folds=3, fold=fold))
        bundle = prepare_data(config)
        train_patients, val_patients = {s.group for s in bundle.train}, {s.group for s in bundle.val}
        assert val_patients and train_patients and not train_patients & val_patients
        assert len(bundle.train) + len(bundle.val) == len(load_folder(acdc_dir))
    half = prepare_data(config_from_dict(tiny_config_dict(acdc_dir, train_fraction=0.5)))
    counts: dict[str, int] = {}
    for sample in half.train:
        counts[sample.group] = counts.get(sample.group, 0) + 1
    full = {s.group: 0 for s in load_folder(acdc_dir)}
    for sample in load_folder(acdc_dir):
        full[sample.group] += 1
    assert all(counts[p] == full[p] for p in counts), "train_fraction must keep whole patients (both phases)"


def _bad_case(root: Path, kind: str) -> Path:
    """An ACDC-layout folder with one patient broken as ``kind`` says; returns the file the error must name."""
    folder = root / "patient001"
    image = np.zeros((8, 8, 3), np.uint8)
    label = np.zeros((8, 8, 3), np.uint8)
    label[2:5, 2:5, 1] = 3
    folder.mkdir(parents=True)
    (folder / "Info.cfg").write_text("ED: 1\nES: 2\nGroup: NOR\n")
    named = folder / "patient001_frame01_gt.nii.gz"
    _save(folder / "patient001_frame01.nii.gz", image)
    _save(folder / "patient001_frame02.nii.gz", image)
    _save(folder / "patient001_frame02_gt.nii.gz", label)
    if kind == "4d":
        named = folder / "patient001_frame01.nii.gz"
        _save(named, np.zeros((8, 8, 3, 5), np.uint8))
        _save(folder / "patient001_frame01_gt.nii.gz", label)
    elif kind == "shape":
        _save(named, np.zeros((8, 8, 4), np.uint8))
    elif kind == "affine":
        _save(named, label, affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    elif kind == "fraction":
        _save(named, label.astype(np.float32) + 0.5)
    elif kind == "range":
        _save(named, label + 3)
    elif kind == "corrupt":
        named.write_bytes(gzip.compress(b"not a nifti at all" * 20)[:40])
    elif kind == "missing_gt":
        named = folder / "patient001_frame01.nii.gz"
    elif kind == "info":
        _save(named, label)
        named = folder / "Info.cfg"
        named.write_text("Group: NOR\nES: 2\n")
    return named


BAD_VOLUMES = [
    ("4d", "4-D (cine)"), ("shape", "does not match"), ("affine", "affine differs"), ("fraction", "whole numbers"),
    ("range", "label values must be 0-3"), ("corrupt", "corrupt or unreadable"), ("missing_gt", "no label volume"),
    ("info", "no ED frame"),
]


@pytest.mark.parametrize(("kind", "words"), BAD_VOLUMES)
def test_bad_volumes_are_one_line_errors_naming_the_file(tmp_path: Path, kind: str, words: str) -> None:
    named = _bad_case(tmp_path / "data", kind)
    with pytest.raises(CmrsegError, match=re.escape(words)) as info:
        load_folder(tmp_path / "data")
    assert str(named) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("kind", "words"), BAD_VOLUMES[:3])
def test_bad_volumes_exit_2_and_write_nothing(tmp_path: Path, volume_run: Path, kind: str, words: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _bad_case(tmp_path / "data", kind)
    before = _tree_hash(tmp_path)
    code = main(["evaluate", "--run", str(volume_run), "--data", str(tmp_path / "data"), "--json", str(tmp_path / "m.json")])
    assert code == 2 and words in capsys.readouterr().err
    if kind == "4d":
        code = main(["predict", "--run", str(volume_run), "--images", str(tmp_path / "data"), "--out", str(tmp_path / "p")])
        assert code == 2
    assert _tree_hash(tmp_path) == before


def test_predict_writes_label_volumes_with_the_input_geometry(volume_run: Path, acdc_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(volume_run), "--images", str(acdc_dir), "--out", str(out), "--overlays",
                 "--indices"]) == 0
    for case in list_cases(acdc_dir):
        source, written = nib.load(str(case.image_path)), nib.load(str(out / f"{case.case}.nii.gz"))
        assert written.shape == source.shape and written.get_data_dtype() == np.uint8
        np.testing.assert_allclose(written.affine, source.affine)
        assert written.header.get_zooms() == source.header.get_zooms()
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2, 3}
        assert (out / f"{case.case}_overlay.png").is_file()
    rows = (out / "indices.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("patient,group,ed_case,es_case")


def test_evaluate_reports_per_volume_ed_es_positions_and_indices(volume_run: Path, acdc_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--run", str(volume_run), "--data", str(acdc_dir), "--json", str(tmp_path / "m.json")]) == 0
    table = capsys.readouterr().out
    assert "Dice 3D ED" in table and "HD95 all mm" in table and "apex" in table and "LV_EF_pct" in table
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["n_volumes"] == 12 and result["hd95_unit"] == "mm"
    assert set(result["volumes"]) == {"all", "ED", "ES"} and result["volumes"]["ED"]["n_volumes"] == 6
    assert sum(result["positions"][p]["n_slices"] for p in ("base", "mid", "apex")) == len(load_folder(acdc_dir))
    assert len(result["indices"]) == 6 and "LV_EF_pct" in result["agreement"]


def test_evaluate_without_data_scores_the_validation_volumes(volume_run: Path) -> None:
    from cmrseg.evaluation import evaluate_run

    result = evaluate_run(volume_run)
    config = json.loads((volume_run / "config.json").read_text())
    val = prepare_data(config_from_dict(config)).val
    assert result["n_volumes"] == len({s.volume for s in val})


def test_other_spacing_is_resampled_and_mapped_back(volume_run: Path, acdc_dir: Path, tmp_path: Path) -> None:
    assert zoom_factors((1.6, 1.6, 8.0), (1.6, 1.6, 8.0)) is None
    assert zoom_factors((0.8, 1.6, 8.0), (1.6, 1.6, 8.0)) == (0.5, 1.0)
    assert zoom_factors(None, (1.6, 1.6, 8.0)) is None
    volume = load_volume(list_cases(acdc_dir)[0])
    fine = np.repeat(volume.image, 2, axis=0)
    _save(tmp_path / "fine" / "case_ED.nii.gz", fine, affine=np.diag([0.8, 1.6, 8.0, 1.0]), zooms=(0.8, 1.6, 8.0))
    assert main(["predict", "--run", str(volume_run), "--images", str(tmp_path / "fine"), "--out", str(tmp_path / "p")]) == 0
    assert nib.load(str(tmp_path / "p" / "case_ED.nii.gz")).shape == fine.shape


def test_data_synth_volumes_command(tmp_path: Path) -> None:
    assert main(["data", "synth", "--volumes", "--out", str(tmp_path / "s"), "--count", "2", "--size", "32",
                 "--layout", "nnunet"]) == 0
    assert len(list((tmp_path / "s" / "imagesTr").glob("*_0000.nii.gz"))) == 4
    assert len(list((tmp_path / "s" / "labelsTr").glob("*.nii.gz"))) == 4


def _count_volume_predictions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Cases passed to the volume predictor from now on; slice-by-slice prediction of samples is refused."""
    import cmrseg.evaluation.slice_scoring
    import cmrseg.inference.volume_prediction

    predicted: list[str] = []
    real = cmrseg.inference.volume_prediction.volume_probabilities

    def counting(predictor, volume, *args):  # type: ignore[no-untyped-def]
        predicted.append(volume.case)
        return real(predictor, volume, *args)

    def refused(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("slices of volumes were predicted a second time, one by one")

    monkeypatch.setattr(cmrseg.inference.volume_prediction, "volume_probabilities", counting)
    monkeypatch.setattr(cmrseg.evaluation.slice_scoring, "predict_sample_masks", refused)
    return predicted


def test_cv_on_volumes_scores_every_held_out_volume_once(acdc_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from cmrseg.workflows.crossval import cross_validate, final_checkpoint
    from cmrseg.evaluation.volume_scoring import predict_held_out_volumes
    from cmrseg.inference import PredictSettings
    from cmrseg.metrics import image_metrics
    from cmrseg.training.trainer import clone_config

    config = config_from_dict(tiny_config_dict(acdc_dir, epochs=1))
    cross_validate(config, folds=2, out_dir=tmp_path / "cv", progress=False)
    predicted = _count_volume_predictions(monkeypatch)
    result = cross_validate(config, folds=2, out_dir=tmp_path / "cv", progress=False)
    assert sorted(predicted) == sorted(c.case for c in list_cases(acdc_dir))
    assert result.volumes is not None and result.volumes["n_volumes"] == 12
    assert sorted(row["case"] for row in result.volumes["per_volume"]) == sorted(c.case for c in list_cases(acdc_dir))
    for name in ("cv_volumes.json", "cv_indices.csv", "cv_indices_true.csv", "cv_agreement_scatter.png"):
        assert (tmp_path / "cv" / name).is_file()
    rows = {row["id"]: row for row in result.per_image}
    assert len(rows) == sum(load_volume(c).n_slices for c in list_cases(acdc_dir))
    fold_config = clone_config(config, folds=2, fold=0)
    volumes, masks = predict_held_out_volumes(tmp_path / "cv" / "fold_0", fold_config,
                                              PredictSettings(checkpoint=final_checkpoint(fold_config)))
    for volume, mask in zip(volumes, masks, strict=True):
        for z in range(volume.n_slices):
            expected = image_metrics(mask[:, :, z], volume.label[:, :, z])["dice"]
            assert rows[volume.slice_id(z)]["dice"] == pytest.approx(expected)


def test_report_on_volumes_shows_3d_metrics_indices_and_plots(volume_run: Path, acdc_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "report.html"
    predicted = _count_volume_predictions(monkeypatch)
    assert main(["report", str(volume_run), "--data", str(acdc_dir), "--out", str(out)]) == 0
    assert sorted(predicted) == sorted(c.case for c in list_cases(acdc_dir))
    page = out.read_text()
    for words in ("<h2>Volumes</h2>", "<h2>Clinical indices</h2>", "LV_EF_pct", "Worst volumes", "HD95 mean (mm)"):
        assert words in page
    assert page.count("data:image/png;base64") >= 2 + 2 * 4


def test_predict_takes_one_nifti_file_as_a_one_volume_dataset(volume_run: Path, acdc_dir: Path, tmp_path: Path) -> None:
    image = acdc_dir / "patient002" / "patient002_frame10.nii.gz"
    assert is_volume_dataset(image) and not is_volume_dataset(acdc_dir / "patient002" / "Info.cfg")
    [case] = list_cases(image)
    assert (case.case, case.patient, case.phase, case.label_path.name) == (
        "patient002_frame10", "patient002", "ES", "patient002_frame10_gt.nii.gz")
    assert main(["predict", "--run", str(volume_run), "--images", str(image), "--out", str(tmp_path / "one")]) == 0
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [".cmrseg-output.json", ".cmrseg-volumes", "cases.csv",
                                                                    "patient002_frame10.nii.gz"]
    assert "patient002_frame10,patient002,ES" in (tmp_path / "one" / "cases.csv").read_text()
    assert main(["predict", "--run", str(volume_run), "--images", str(acdc_dir), "--out", str(tmp_path / "all")]) == 0
    np.testing.assert_array_equal(np.asarray(nib.load(str(tmp_path / "one" / "patient002_frame10.nii.gz")).dataobj),
                                  np.asarray(nib.load(str(tmp_path / "all" / "patient002_frame10.nii.gz")).dataobj))
    with pytest.raises(CmrsegError, match="a label volume"):
        list_cases(acdc_dir / "patient002" / "patient002_frame10_gt.nii.gz")
