"""The shipped model (#26): predict with no training, from the installed package, and refuse a damaged one."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cmrseg import pretrained_models
from cmrseg.cli import main
from cmrseg.data.synth import write_synthetic_volumes
from cmrseg.errors import CmrsegError
from cmrseg.qc.assess import anatomy_warning

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One phantom patient's ED and ES volumes at 1.8 mm on a 144-pixel grid, with spacing, flat names."""
    return write_synthetic_volumes(tmp_path_factory.mktemp("scans") / "flat", patients=1, seed=2, layout="flat",
                                   with_labels=False, slices=(5, 5), grids=[(1.8, 144)])


def test_catalog_lists_the_default_model_with_its_checked_file() -> None:
    models = pretrained_models.catalog()
    assert pretrained_models.DEFAULT_MODEL in models
    path = pretrained_models.pretrained_path()
    assert path.parent == pretrained_models.package_folder() and path.stat().st_size == models[pretrained_models.DEFAULT_MODEL].bytes
    assert 1e6 < path.stat().st_size < 10e6  # a few MB of half-precision weights
    with pytest.raises(CmrsegError, match=r"shipped model 'unknown' not found; shipped models: acdc-native-unet"):
        pretrained_models.find("unknown")
    with pytest.raises(CmrsegError, match="choose one"):
        pretrained_models.model_source("runs/x", "acdc-native-unet")


def test_predict_without_a_run_uses_the_shipped_model(scans: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "labels"
    assert main(["predict", "--images", str(scans), "--out", str(out), "--indices", "--no-tta"]) == 0
    said = capsys.readouterr().out
    assert said.splitlines()[0].startswith("using the shipped model acdc-native-unet 1.0 (") and "ACDC, 50 patients" in said
    assert said.splitlines()[1].startswith("quality control: each volume is also predicted by the shipped QC reference "
                                           "model acdc-native-unet-qc")
    with (out / "cases.csv").open() as handle:
        assert all(0.0 <= float(row["qc_reference_dice"]) <= 1.0 for row in csv.DictReader(handle))
    for image in sorted(scans.glob("*.nii.gz")):
        source, labels = nib.load(image), nib.load(out / image.name)
        assert labels.shape == source.shape and np.allclose(labels.affine, source.affine)
        assert set(np.unique(np.asarray(labels.dataobj))) <= {0, 1, 2, 3}
    header = (out / "indices.csv").read_text().splitlines()[0]
    assert "LV_EF_pct" in header and "LV_mass_g" in header


def test_unknown_model_names_the_shipped_ones(scans: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--model", "unknown", "--images", str(scans), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "cmrseg: error: shipped model 'unknown' not found; shipped models: acdc-native-unet, acdc-native-unet-qc"
    assert not (tmp_path / "o").exists()


def test_models_pretrained_prints_the_card(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--pretrained"]) == 0
    card = capsys.readouterr().out
    assert card.startswith("acdc-native-unet 1.0 (default):")
    for words in ("# Model card: acdc-native-unet 1.0", "## Cross-validated accuracy", "per-volume mean Dice 0.872",
                  "## Expected input", "1.5 T and 3 T", "five diagnosis groups", "not for diagnosis", "long-axis",
                  "acdc-native-unet-qc 1.0: half-width", "# Model card: acdc-native-unet-qc 1.0", "--qc-reference"):
        assert words in card, words


@pytest.fixture()
def shipped_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the package's shipped files that the test may damage."""
    folder = tmp_path / "pretrained"
    shutil.copytree(pretrained_models.package_folder(), folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setattr(pretrained_models, "package_folder", lambda: folder)
    return folder


def test_a_tampered_or_missing_shipped_file_is_a_one_line_error(shipped_copy: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    zip_path = shipped_copy / pretrained_models.find().file
    data = bytearray(zip_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    zip_path.write_bytes(bytes(data))
    assert main(["export", "--out", str(tmp_path / "m.zip")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not match its catalog sha256" in err and "reinstall cmrseg" in err
    zip_path.unlink()
    with pytest.raises(CmrsegError, match="acdc_native_unet.zip: the file of shipped model 'acdc-native-unet' is missing"):
        pretrained_models.load_pretrained()
    (shipped_copy / pretrained_models.CATALOG_FILE).write_text("{")
    with pytest.raises(CmrsegError, match="not a readable catalog of shipped models"):
        pretrained_models.find()


def test_export_of_the_shipped_model_keeps_its_card(tmp_path: Path) -> None:
    assert main(["export", "--model", "acdc-native-unet", "--out", str(tmp_path / "copy.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "copy.zip") as archive:
        card = json.loads(archive.read("model_card.json"))
        names = archive.namelist()
    assert card["name"] == "acdc-native-unet" and "0.872" in card["cross_validation"] and "plan.json" in names
    assert "Research use only" in card["intended_use"]


def test_anatomy_warning_names_what_is_not_a_heart() -> None:
    heart = {"missing": [], "lv_enclosure": 0.97}
    assert anatomy_warning("p1_ED", heart) is None
    line = anatomy_warning("liver", {"missing": ["RV", "LV"], "lv_enclosure": 0.0})
    assert line is not None and line.startswith("liver: the labels show no LV,") and "short-axis" in line
    open_cavity = anatomy_warning("lax", {"missing": [], "lv_enclosure": 0.3})
    assert open_cavity is not None and "(30 % of its border)" in open_cavity


def test_a_volume_that_is_no_heart_gets_a_warning(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    noise = nib.Nifti1Image((np.random.default_rng(0).random((96, 96, 4)) * 100).astype(np.int16),
                            np.diag([1.5, 1.5, 8.0, 1.0]))
    noise.header.set_xyzt_units("mm")
    nib.save(noise, scans / "phantom_ED.nii.gz")
    with pytest.warns(UserWarning) as caught:
        assert main(["predict", "--images", str(scans), "--out", str(tmp_path / "out"), "--no-tta"]) == 0
    said = [str(w.message) for w in caught]
    assert any(line.startswith("phantom_ED: the labels show no") and "short-axis" in line for line in said), said
    assert not any("no voxel spacing" in line for line in said)


def test_a_cine_volume_is_refused_with_its_frame_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scans = tmp_path / "cine"
    scans.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 3, 12), np.int16), np.diag([1.5, 1.5, 8.0, 1.0])), scans / "p_ED.nii.gz")
    assert main(["predict", "--images", str(scans), "--out", str(tmp_path / "out")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("cmrseg: error: ") and "p_ED.nii.gz: 4-D (cine) volume with 12 frames" in last
    assert not (tmp_path / "out").exists()


def test_the_shipped_model_loads_from_an_installed_package(scans: Path, tmp_path: Path) -> None:
    """Built as a wheel and installed into a fresh venv (its dependencies from this environment), the package finds its
    model in site-packages, not in the source tree, and predicts a volume from another folder."""
    source, wheels = tmp_path / "source", tmp_path / "wheels"  # built from a copy: the build leaves files behind
    shutil.copytree(REPO_ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO_ROOT / name).is_file():
            shutil.copy2(REPO_ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(source)], check=True, capture_output=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    str(next(wheels.glob("cmrseg-*.whl")))], check=True, capture_output=True)
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co., not this source tree
    script = ("import cmrseg, sys; from cmrseg import pretrained_models as p; from cmrseg.cli import main; "
              "assert cmrseg.__file__.startswith(sys.argv[1]), cmrseg.__file__; "
              "assert str(p.pretrained_path()).startswith(sys.argv[1]); "
              "model = cmrseg.load_pretrained(); print(type(model).__name__, model.spec.network_channels, model.spec.target_spacing); "
              "sys.exit(main(['predict', '--images', sys.argv[2], '--out', 'out', '--no-tta']))")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", script, str(site), str(scans)], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "ModelPredictor 2 [1.5625, 1.5625]"
    assert len(list((tmp_path / "out").glob("*.nii.gz"))) == 2


def test_shipped_model_on_two_real_training_patients(tmp_path: Path) -> None:
    """acdc_native (skipped where absent): two of the patients it was trained on, ED and ES, scored at native
    resolution, each volume's mean Dice over RV, Myo and LV at least 0.85 (a floor, not an accuracy claim)."""
    import os

    native = Path(os.environ.get("CMRSEG_NATIVE", REPO_ROOT.parent / "shared" / "data" / "acdc_native"))
    if not (native / "patient001" / "Info.cfg").is_file():
        pytest.skip("real acdc_native volumes not found (set CMRSEG_NATIVE or place them at ../shared/data/acdc_native)")
    subset = tmp_path / "two"
    subset.mkdir()
    for patient in ("patient001", "patient041"):
        (subset / patient).symlink_to(native / patient, target_is_directory=True)
    assert main(["evaluate", "--data", str(subset), "--json", str(tmp_path / "metrics.json"), "--no-tta"]) == 0
    rows = json.loads((tmp_path / "metrics.json").read_text())["per_volume"]
    dice = {row["case"]: float(np.mean([row["dice"][s] for s in ("RV", "Myo", "LV")])) for row in rows}
    assert len(dice) == 4 and min(dice.values()) >= 0.85, dice
