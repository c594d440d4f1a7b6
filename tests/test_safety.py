"""Issue #12, nothing lost and nothing silent: bad inputs and output paths over every command change no
file and say one line; run folders have one writer; scoring is strict; ensembles know their splits."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmrseg import runs
from cmrseg.cli import main
from cmrseg.config import config_from_dict
from cmrseg.data.synth import write_synthetic_dataset
from cmrseg.workflows.ensemble import make_ensemble
from cmrseg.errors import CmrsegError
from cmrseg.evaluation import score_submission, validation_samples
from cmrseg.io.locks import run_lock
from cmrseg.io.outputs import LOCK_FILE, MARKER_FILE, check_output_dir, check_output_file
from cmrseg.training.trainer import train

from conftest import REPO_ROOT, tiny_config_dict


def _mask(cells: list[tuple[int, int, int]]) -> np.ndarray:
    mask = np.zeros((8, 8), np.uint8)
    for row, col, label in cells:
        mask[row, col] = label
    return mask


def _save_masks(folder: Path, masks: dict[str, np.ndarray]) -> None:
    folder.mkdir()
    for stem, mask in masks.items():
        Image.fromarray(mask).save(folder / f"{stem}.png")


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("id,encoding\n" + "".join(f"{row}\n" for row in rows))
    return path


TRUTH = {"p1_mask": _mask([(0, 0, 1), (1, 1, 2), (2, 2, 3)]), "p2_mask": _mask([(3, 3, 1), (4, 4, 3)])}
"""Two hand-made 8x8 truths; in column-major 1-based numbering (r, c) is pixel 8c + r + 1."""
COMPLETE = ["p1_mask1,1 1", "p1_mask2,10 1", "p1_mask3,19 1", "p2_mask1,28 1", "p2_mask2,", "p2_mask3,37 1"]


@pytest.fixture(scope="module")
def world(synth_dir: Path, slice_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Everything the bad commands point at: data, two runs on different splits, their ensemble, odd paths."""
    w = tmp_path_factory.mktemp("world")
    write_synthetic_dataset(w / "data", count=4, seed=1, size=64)
    shutil.copytree(slice_run, w / "run")
    train(config_from_dict(tiny_config_dict(synth_dir, epochs=1, split_seed=5)), w / "run_other", progress=False)
    make_ensemble([w / "run", w / "run_other"], w / "ens_mixed")
    (w / "cfg.json").write_text(json.dumps(tiny_config_dict(synth_dir, epochs=1)))
    (w / "afile.txt").write_text("not a folder")
    (w / "foreign").mkdir()
    (w / "foreign" / "keep.txt").write_text("the user's")
    (w / "foreign_clash").mkdir()
    (w / "foreign_clash" / "synth1_mask.png").write_text("the user's, same name as an output")
    (w / "clash").mkdir()
    for name in ("a.png", "a.PNG"):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(w / "clash" / name, format="PNG")
    for name in ("nonorm", "badnorm"):
        shutil.copytree(w / "run", w / name)
    (w / "nonorm" / runs.NORMALIZATION_FILE).unlink()
    (w / "badnorm" / runs.NORMALIZATION_FILE).write_text("{not json")
    _save_masks(w / "truth", TRUTH)
    _save_masks(w / "truth_one", {"p1_mask": TRUTH["p1_mask"]})
    _csv(w / "good.csv", COMPLETE)
    _csv(w / "dup.csv", [*COMPLETE, "p1_mask2,10 1"])
    _csv(w / "unknown.csv", [*COMPLETE, "p9_mask1,1 1", "p9_mask2,"])
    _csv(w / "missing.csv", COMPLETE[:-1])
    (w / "latin1.csv").write_bytes("id,encoding\np1_mask1,1 1 \xe9\n".encode("latin-1"))
    return w


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


PREDICT = ["predict", "--run", "{w}/run", "--images", "{w}/data/image"]
CASES = [
    # (argv, exit code, words of the one-line message)
    ([*PREDICT, "--out", "{w}/data/image"], 2, "is the input"),
    ([*PREDICT, "--out", "{w}/data/image/sub"], 2, "lies inside the input"),
    ([*PREDICT, "--out", "{w}/foreign"], 2, "not an output of 'cmrseg predict'"),
    ([*PREDICT, "--out", "{w}/foreign", "--device", "tpu"], 2, "not an output of 'cmrseg predict'"),
    ([*PREDICT, "--out", "{w}/foreign_clash", "--overwrite"], 2, "was not written by cmrseg predict"),
    ([*PREDICT, "--out", "{w}/afile.txt"], 2, "exists and is a file"),
    ([*PREDICT, "--out", "{w}/afile.txt/sub"], 2, "afile.txt is a file, not a folder"),
    ([*PREDICT, "--out", "{w}/new_pred", "--device", "tpu"], 2, "device 'tpu'"),
    (["predict", "--run", "{w}/run", "--images", "{w}/clash", "--out", "{w}/new_pred"], 2, "both give the image id 'a'"),
    (["predict", "--run", "{w}/badnorm", "--images", "{w}/data", "--out", "{w}/new_pred"], 2, "not a valid normalisation file"),
    (["data", "synth", "--out", "{w}/foreign"], 2, "not an output of 'cmrseg data synth'"),
    (["data", "synth", "--out", "{w}/afile.txt"], 2, "exists and is a file"),
    (["data", "synth", "--out", "{w}/new_synth", "--size", "0"], 2, "--size must be at least 16"),
    (["data", "synth", "--out", "{w}/new_synth", "--size", "-3"], 2, "--size must be at least 16"),
    (["data", "synth", "--out", "{w}/new_synth", "--seed", "-1"], 2, "--seed must be 0 or more"),
    (["data", "synth", "--out", "{w}/new_synth", "--count", "0"], 2, "--count must be at least 1"),
    (["ensemble", "{w}/run", "{w}/run_other", "--out", "{w}/run_other"], 2, "is the input"),
    (["ensemble", "{w}/run", "{w}/run_other", "--out", "{w}/run/ens"], 2, "lies inside the input"),
    (["ensemble", "{w}/run", "{w}/run_other", "--out", "{w}/foreign"], 2, "not an output of 'cmrseg ensemble'"),
    (["ensemble", "{w}/run", "{w}/nonorm", "--out", "{w}/new_ens"], 2, "normalization.json: missing"),
    (["submit", "--masks", "{w}/truth", "--out", "{w}/foreign"], 2, "exists and is a folder"),
    (["submit", "--masks", "{w}/truth", "--out", "{w}/truth/s.csv"], 2, "lies inside the input"),
    (["submit", "--masks", "{w}/truth", "--out", "{w}/afile.txt/s.csv"], 2, "is a file, not a folder"),
    (["submit", "--masks", "{w}/truth", "--out", "{w}/afile.txt"], 2, "afile.txt: exists and was not written by cmrseg"),
    (["report", "{w}/run", "--out", "{w}/afile.txt"], 2, "afile.txt: exists and was not written by cmrseg"),
    (["export", "--run", "{w}/run", "--out", "{w}/afile.txt"], 2, "afile.txt: exists and was not written by cmrseg"),
    (["evaluate", "--run", "{w}/run", "--data", "{w}/data", "--json", "{w}/afile.txt"], 2,
     "afile.txt: exists and was not written by cmrseg"),
    (["train", "--config", "{w}/cfg.json", "--out", "{w}/new_run", "--set", "model_info.model_path={w}/afile.txt"], 2,
     "afile.txt: exists and was not written by cmrseg"),
    (["report", "{w}/run", "--out", "{w}/foreign"], 2, "exists and is a folder"),
    (["report", "{w}/run", "--out", "{w}/run/config.json"], 2, "is the input"),
    (["evaluate", "--run", "{w}/run", "--data", "{w}/data", "--json", "{w}/foreign"], 2, "exists and is a folder"),
    (["evaluate", "--run", "{w}/run", "--data", "{w}/data", "--json", "{w}/run/config.json"], 2, "is the input"),
    (["evaluate", "--run", "{w}/run", "--data", "{w}/data", "--device", "tpu"], 2, "device 'tpu'"),
    (["evaluate", "--run", "{w}/badnorm", "--data", "{w}/data"], 2, "not a valid normalisation file"),
    (["evaluate", "--run", "{w}/ens_mixed"], 2, "members were validated on different splits"),
    (["train", "--config", "{w}/cfg.json", "--out", "{w}/new_run", "--epochs", "0"], 2, "--epochs must be at least 1"),
    (["train", "--config", "{w}/cfg.json", "--out", "{w}/new_run", "--epochs", "-1"], 2, "--epochs must be at least 1"),
    (["train", "--config", "{w}/cfg.json", "--out", "{w}/new_run", "--set", "epochs=0"], 2, "epochs"),
    (["train", "--config", "{w}/cfg.json", "--out", "{w}/afile.txt"], 2, "exists and is a file"),
    (["train", "--config", "{w}/cfg.json", "--out", "{w}/foreign"], 2, "not an output of 'cmrseg train'"),
    (["train", "--config", "{w}/cfg.json", "--out", "{w}/new_run", "--set", "model_info.model_path={w}/foreign"], 2,
     "exists and is a folder"),
    (["train", "--config", "{w}/cfg.json", "--out", "{w}/new_run", "--set", "device=tpu"], 2, "device 'tpu'"),
    (["train", "--out", "{w}/run", "--resume", "--epochs", "1"], 2, "below the 2 epochs already done"),
    (["cv", "--config", "{w}/cfg.json", "--out", "{w}/new_cv", "--folds", "20"], 2, "needs at least 20 patients"),
    (["cv", "--config", "{w}/cfg.json", "--out", "{w}/new_cv", "--folds", "2", "--only", "5"], 2, "--only: folds must be in 0..1"),
    (["cv", "--config", "{w}/cfg.json", "--out", "{w}/new_cv", "--folds", "2", "--only", "0", "--ensemble"], 2,
     "--ensemble needs every fold"),
    (["cv", "--config", "{w}/cfg.json", "--out", "{w}/new_cv", "--folds", "2", "--checkpoint", "nope"], 2, "--checkpoint 'nope'"),
    (["cv", "--config", "{w}/cfg.json", "--out", "{w}/afile.txt", "--folds", "2"], 2, "exists and is a file"),
    (["cv", "--config", "{w}/cfg.json", "--out", "{w}/foreign", "--folds", "2"], 2, "not an output of 'cmrseg cv'"),
    (["sweep", "--config", "{w}/cfg.json", "--set", "seed=0,1", "--out", "{w}/afile.txt"], 2, "exists and is a file"),
    (["sweep", "--config", "{w}/cfg.json", "--set", "seed=0,1", "--out", "{w}/foreign"], 2, "not an output of 'cmrseg sweep'"),
    (["score", "--submission", "{w}/dup.csv", "--masks", "{w}/truth"], 2, "1 duplicated ids (first: 'p1_mask2' on lines 3 and 8)"),
    (["score", "--submission", "{w}/unknown.csv", "--masks", "{w}/truth"], 2, "2 row ids have no true mask (first: 'p9_mask1')"),
    (["score", "--submission", "{w}/good.csv", "--masks", "{w}/truth_one"], 2, "3 row ids have no true mask (first: 'p2_mask1')"),
    (["score", "--submission", "{w}/missing.csv", "--masks", "{w}/truth"], 2, "1 rows are missing (first: 'p2_mask3')"),
    (["score", "--submission", "{w}/latin1.csv", "--masks", "{w}/truth"], 2, "not a UTF-8 text file"),
]


@pytest.mark.parametrize(("argv", "code", "words"), CASES, ids=[f"{c[0][0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_command_says_one_line_and_changes_nothing(world: Path, argv: list[str], code: int, words: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    before = _hashes(world)
    assert main([arg.replace("{w}", str(world)) for arg in argv]) == code
    err = capsys.readouterr().err
    assert err.startswith("cmrseg: error: ") and err.count("\n") == 1 and words in err, err
    assert _hashes(world) == before


def test_good_score_is_exact_and_partial_score_says_what_is_missing(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert score_submission(world / "good.csv", world / "truth")["dice"]["mean"] == 1.0
    summary = score_submission(world / "missing.csv", world / "truth", allow_partial=True)
    assert summary["n_images"] == 1 and [row["id"] for row in summary["per_image"]] == ["p1_mask"]
    assert summary["partial"] == {"masks": 2, "missing_masks": 1, "missing_rows": 1, "unknown_rows": 0}
    assert main(["score", "--submission", str(world / "unknown.csv"), "--masks", str(world / "truth"), "--allow-partial"]) == 0
    out = capsys.readouterr().out
    assert "partial score: 2 of 2 masks scored; 0 masks lack rows (0 rows missing), 2 rows have no true mask" in out


def test_predict_reruns_replace_own_files_and_keep_foreign_ones(world: Path, tmp_path: Path) -> None:
    from cmrseg.inference import predict_folder

    out = tmp_path / "pred"
    predict_folder(world / "run", world / "data", out, overlays=True)
    (out / "notes.txt").write_text("mine")
    predict_folder(world / "run", world / "data", out, overwrite=True)
    names = sorted(p.name for p in out.iterdir())
    assert names == [MARKER_FILE, "cases.csv", "notes.txt", *[f"synth{i}_mask.png" for i in range(1, 5)]]
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / MARKER_FILE).read_text())["command"] == "predict"


def test_single_output_files_replace_only_what_cmrseg_wrote(world: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.csv").write_text("the user's")
    submit = ["submit", "--masks", str(world / "truth"), "--out"]
    assert main([*submit, str(out / "sub.csv")]) == 0
    first = (out / "sub.csv").read_text()
    assert main([*submit, str(out / "sub.csv")]) == 0, "a rerun replaces cmrseg's own file"
    assert (out / "sub.csv").read_text() == first
    assert main(["evaluate", "--run", str(world / "run"), "--data", str(world / "data"), "--json", str(out / "m.json")]) == 0
    assert json.loads((out / ".cmrseg-files.json").read_text())["files"] == ["m.json", "sub.csv"]
    capsys.readouterr()
    assert main([*submit, str(out / "notes.csv")]) == 2
    assert "notes.csv: exists and was not written by cmrseg" in capsys.readouterr().err
    assert (out / "notes.csv").read_text() == "the user's"
    assert sorted(p.name for p in out.iterdir()) == [".cmrseg-files.json", "m.json", "notes.csv", "sub.csv"]


def test_stale_temporaries_of_dead_processes_are_cleaned_at_the_next_start(world: Path, tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    run = tmp_path / "run"
    shutil.copytree(world / "run", run)
    killed_write = run / f".last.pt.cmrseg-tmp-{dead_pid}-abc123.pt"
    killed_write.touch()
    (run / runs.CHECKPOINT_DIR / f".epoch_0002.pt.cmrseg-tmp-{dead_pid}-x.pt").touch()
    alive = run / f".history.csv.cmrseg-tmp-{os.getpid()}-q.csv"
    alive.touch()
    check_output_dir(run, "train", legacy=(runs.CONFIG_FILE,))
    assert not killed_write.exists() and not list((run / runs.CHECKPOINT_DIR).glob(".*"))
    assert alive.exists()
    stale_dir = tmp_path / f".pred.cmrseg-tmp-{dead_pid}-zz"
    stale_dir.mkdir()
    (stale_dir / "half.png").touch()
    check_output_dir(tmp_path / "pred", "predict")
    assert not stale_dir.exists()


def test_unwritable_location_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(CmrsegError, match="is not writable"):
        check_output_file(tmp_path / "deep" / "m.json")
    assert not (tmp_path / "deep").exists()


def _locker(folder: Path) -> subprocess.Popen[str]:
    """A second process that takes the folder's lock and sleeps until killed."""
    code = ("import sys, time\nfrom cmrseg.io.locks import run_lock\n"
            "with run_lock(sys.argv[1], 'train'):\n    print('locked', flush=True)\n    time.sleep(120)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_and_a_killed_writers_lock_is_taken_over(synth_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    proc = _locker(folder)
    try:
        with pytest.raises(CmrsegError, match=f"in use by pid {proc.pid}, cmrseg train"):
            train(config_from_dict(tiny_config_dict(synth_dir, epochs=1)), folder, progress=False)
        with pytest.raises(CmrsegError, match=f"pid {proc.pid}"):
            with run_lock(folder, "cv"):
                pass
        assert not (folder / runs.CONFIG_FILE).exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (folder / LOCK_FILE).exists()
    with run_lock(folder, "train"):
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (folder / LOCK_FILE).exists()


def test_ensemble_records_member_splits_and_evaluates_a_shared_one(world: Path, tmp_path: Path) -> None:
    out = make_ensemble([world / "run", world / "run"], tmp_path / "ens")
    members = runs.read_run_config(out).model_info.options["members"]
    assert members[0]["split"] == members[1]["split"]
    assert members[0]["split"]["split_seed"] == 0 and members[0]["split"]["val_fraction"] == 0.2
    assert [s.id for s in validation_samples(out)] == [s.id for s in validation_samples(world / "run")]
    mixed = runs.read_run_config(world / "ens_mixed").model_info.options["members"]
    assert mixed[1]["split"]["split_seed"] == 5
    with pytest.raises(CmrsegError, match=r"run_other differs from .*run, 1 of 2 members differ"):
        validation_samples(world / "ens_mixed")


def test_failed_cv_check_leaves_no_config(world: Path, tmp_path: Path) -> None:
    assert main(["cv", "--config", str(world / "cfg.json"), "--out", str(tmp_path / "cv"), "--folds", "40"]) == 2
    assert not (tmp_path / "cv" / runs.CONFIG_FILE).exists()


# Issue #24, round two: markers, exports, bad volumes and workers. Every case runs against ``w24`` (its own odd
# folders) with the export cache in ``w24/../cache``; the world, w24 and the cache are hashed before and after.

@pytest.fixture(scope="module")
def w24(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Issue #24's odd inputs beside the world: tampered markers, an export zip and its cache entry."""
    root = tmp_path_factory.mktemp("w24")
    cache = tmp_path_factory.mktemp("cache24")
    previous = os.environ.get("CMRSEG_CACHE")
    os.environ["CMRSEG_CACHE"] = str(cache)
    (root / "victim.txt").write_text("the user's, outside every output")
    for command, folder in (("predict", "evil_pred"), ("data synth", "evil_synth")):
        for tag, name in (("up", "../victim.txt"), ("abs", str(root / "victim.txt")), ("dots", "../.."),
                          ("link", "link/victim.txt")):
            out = root / f"{folder}_{tag}"
            out.mkdir()
            (out / "link").symlink_to(root)
            (out / MARKER_FILE).write_text(json.dumps({"command": command, "files": [name]}))
    assert main(["export", "--run", str(world / "run"), "--out", str(root / "model.zip")]) == 0
    (root / "entry").symlink_to(runs.require_run_dir(root / "model.zip"))
    _altered_zip(root / "model.zip", root / "bomb.zip", extra={"history.csv": bytes(8 * 1024**2)})
    _altered_zip(root / "model.zip", root / "dotdot.zip", files=["..", runs.CONFIG_FILE], extra={"..": b"x"})
    _bad_volumes(root)
    _bad_networks(world, root)
    _bad_trainings(root)
    for name, spacing in (("neg", [-1.6, -1.6, 8]), ("zero", [0, 1.6, 8]), ("str", "1.6"), ("far", [0.0016, 0.0016, 0.008]),
                          ("fine", [0.15, 0.15, 8])):
        shutil.copytree(world / "run", root / f"run_spacing_{name}")
        data = json.loads((world / "run" / runs.DATA_FILE).read_text())
        (root / f"run_spacing_{name}" / runs.DATA_FILE).write_text(json.dumps({**data, "spacing": spacing}))
        (root / f"run_spacing_{name}" / runs.PLAN_FILE).unlink()  # a run from before plans: data.json gives the spacing
    for name, spacing in (("neg", [-1.6, -1.6]), ("str", "1.6")):
        shutil.copytree(world / "run", root / f"run_plan_{name}")
        plan = json.loads((world / "run" / runs.PLAN_FILE).read_text())
        (root / f"run_plan_{name}" / runs.PLAN_FILE).write_text(json.dumps({**plan, "target_spacing": spacing}))
    yield root
    if previous is None:
        os.environ.pop("CMRSEG_CACHE")
    else:
        os.environ["CMRSEG_CACHE"] = previous


def _altered_zip(source: Path, out: Path, files: list[str] | None = None, extra: dict[str, bytes] | None = None) -> None:
    """A copy of the export zip ``source`` with members ``extra`` added or replaced and its manifest listing ``files``."""
    from cmrseg.formats.bundle import MANIFEST_FILE

    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(members[MANIFEST_FILE])
    manifest["files"] = manifest["files"] if files is None else files
    members.update({**(extra or {}), MANIFEST_FILE: json.dumps(manifest).encode()})
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _nifti(path: Path, data: np.ndarray, zooms: tuple[float, ...] = (1.5, 1.5, 8.0), unit: str = "mm") -> None:
    import nibabel as nib

    image = nib.Nifti1Image(data, np.diag([*zooms[:3], *[1.0] * (4 - len(zooms[:3]))]))
    image.header.set_zooms(zooms[: data.ndim])
    image.header.set_xyzt_units(unit)
    nib.save(image, path)


def _bad_volumes(root: Path) -> None:
    """Phantom volume folders (ACDC, 2 patients, 48x48x3), each broken in one way; ``acdc`` itself is good."""
    import nibabel as nib

    from cmrseg.data.synth import write_synthetic_volumes

    good = write_synthetic_volumes(root / "acdc", patients=2, seed=2, size=48, slices=(3, 3))
    for name in ("nan", "2d", "ed_super", "ed_long", "ed_es", "two_folders", "mixed", "pixdim", "small"):
        shutil.copytree(good, root / f"vol_{name}")
    frame = "patient001/patient001_frame01"
    image = np.random.default_rng(0).random((48, 48, 3)).astype(np.float32)
    image[3, 4, 1] = np.nan
    _nifti(root / f"vol_nan/{frame}.nii.gz", image)
    _nifti(root / f"vol_2d/{frame}.nii.gz", image[:, :, 0] * 0, zooms=(1.5, 1.5))
    for name, ed in (("ed_super", "\u00b2"), ("ed_long", "9" * 5000), ("ed_es", "10")):
        (root / f"vol_{name}/patient002/Info.cfg").write_text(f"ED: {ed}\nES: 10\nGroup: SYN\n")
    for suffix in (".nii.gz", "_gt.nii.gz"):
        shutil.copy(root / f"vol_two_folders/{frame}{suffix}", root / f"vol_two_folders/patient002/patient001_frame01{suffix}")
    shutil.copy(root / f"vol_mixed/{frame}.nii.gz", root / "vol_mixed/stray.nii.gz")
    label = nib.load(root / f"vol_pixdim/{frame}_gt.nii.gz")
    altered = nib.Nifti1Image(np.asarray(label.dataobj), label.affine, label.header)
    altered.header.set_zooms((1.6, 1.6, 5.0))
    nib.save(altered, root / f"vol_pixdim/{frame}_gt.nii.gz")
    for unit in ("micron", "meter"):
        folder = root / f"vol_{unit}"
        shutil.copytree(good, folder)
        for path in folder.rglob("*.nii.gz"):
            loaded = nib.load(path)
            loaded.header.set_xyzt_units(unit)
            nib.save(nib.Nifti1Image(np.asarray(loaded.dataobj), loaded.affine, loaded.header), path)
    write_synthetic_volumes(root / "vol_small", patients=2, seed=2, size=32, slices=(3, 3), overwrite=True)
    flat = write_synthetic_volumes(root / "flat", patients=1, seed=2, size=48, slices=(3, 3), layout="flat")
    for name in ("nii", "lower"):
        shutil.copytree(flat, root / f"flat_{name}")
    for suffix in ("", "_gt"):
        loaded = nib.load(flat / f"patient001_ED{suffix}.nii.gz")
        nib.save(loaded, root / f"flat_nii/patient001_ED{suffix}.nii")
        shutil.copy(flat / f"patient001_ED{suffix}.nii.gz", root / f"flat_lower/patient001_ed{suffix}.nii.gz")


def _tiny_graph(path: Path, channels: int, normalization: dict, training_data: dict | None = None) -> None:
    """A cmrseg-labelled ONNX graph whose scores are ``channels`` copies of the input image."""
    import onnx
    from onnx import TensorProto, helper

    from cmrseg.data.input_spec import InputSpec
    from cmrseg.data.normalization import Normalization
    from cmrseg.formats.onnx import onnx_metadata

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, "H", "W"])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", channels, "H", "W"])
    node = helper.make_node("Concat", ["image"] * channels, ["scores"], axis=1)
    model = helper.make_model(helper.make_graph([node], "tiny", [image], [scores]),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    spec = InputSpec(normalization=Normalization.from_dict(normalization))
    onnx.helper.set_model_props(model, onnx_metadata(spec, {}, None, training_data))
    onnx.save(model, str(path))


def _bad_networks(world: Path, root: Path) -> None:
    """A run whose weights hold a NaN (its onnxruntime graph cached already), and tiny ONNX graphs with one output
    channel or a negative training spacing in their metadata."""
    import torch

    shutil.copytree(world / "run", root / "run_nan")
    checkpoint = torch.load(root / "run_nan" / runs.BEST_CHECKPOINT, weights_only=True)
    first = next(key for key, value in checkpoint["model"].items() if value.is_floating_point() and value.ndim == 4)
    checkpoint["model"][first].fill_(float("nan"))
    torch.save(checkpoint, root / "run_nan" / runs.BEST_CHECKPOINT)
    normalization = json.loads((world / "run" / runs.NORMALIZATION_FILE).read_text())
    try:
        _tiny_graph(root / "one_channel.onnx", 1, normalization)
        _tiny_graph(root / "neg_spacing.onnx", 4, normalization, {"spacing": [-1.6, -1.6, 8.0]})
        from cmrseg.inference import PredictSettings, load_run

        load_run(root / "run_nan", PredictSettings(engine="onnxruntime"))
    except ImportError:
        pass


def _bad_trainings(root: Path) -> None:
    """Volumes of two slices (base and mid only), a config that samples apex slices only, and an ensemble of two
    volume runs validated on different splits."""
    from cmrseg.data.synth import write_synthetic_volumes

    thin = write_synthetic_volumes(root / "vol_thin", patients=4, seed=3, size=32, slices=(2, 2))
    config = tiny_config_dict(thin, epochs=1, slice_sampling={"base": 0, "mid": 0, "apex": 1})
    (root / "cfg_apex.json").write_text(json.dumps(config))
    members = []
    for seed in (0, 5):
        members.append(root / f"vrun{seed}")
        train(config_from_dict(tiny_config_dict(thin, epochs=1, split_seed=seed, normalization="per_image")),
              members[-1], progress=False)
    make_ensemble(members, root / "vens_mixed")


ONNX = pytest.mark.skipif(not all(map(importlib.util.find_spec, ("onnx", "onnxruntime", "onnxscript"))),
                          reason="needs the onnx extras")
P24 = ["predict", "--run", "{w}/run", "--images", "{w}/data/image"]
PV = ["predict", "--run", "{w}/run", "--out", "{v}/new_pred", "--images"]
PZIP = ["predict", "--images", "{w}/data/image", "--out", "{v}/new_pred", "--run"]
CASES_24 = [
    # (argv, exit code, words of the one-line message); {w} is the world, {v} is w24
    *[([*P24, "--out", f"{{v}}/evil_pred_{tag}"], 2, "expected a plain relative name") for tag in ("up", "abs", "dots")],
    ([*P24, "--out", "{v}/evil_pred_link"], 2, "leads outside"),
    *[(["data", "synth", "--out", f"{{v}}/evil_synth_{tag}"], 2, "expected a plain relative name")
      for tag in ("up", "abs", "dots")],
    (["data", "synth", "--out", "{v}/evil_synth_link", "--overwrite"], 2, "leads outside"),
    ([*P24, "--out", "{w}/run", "--overwrite"], 2, "is the input"),
    ([*P24, "--out", "{w}/run"], 2, "is the input"),
    ([*P24, "--out", "{w}/run/preds"], 2, "lies inside the input"),
    (["predict", "--run", "{v}/model.zip", "--images", "{w}/data/image", "--out", "{v}/entry", "--overwrite"], 2,
     "is the input"),
    (["predict", "--run", "{v}/model.zip", "--images", "{w}/data/image", "--out", "{v}/entry/p"], 2,
     "lies inside the input"),
    ([*PZIP, "{v}/bomb.zip"], 2, "member history.csv inflates to 8,388,608 bytes"),
    ([*PZIP, "{v}/dotdot.zip"], 2, "lists '..', expected a plain file name"),
    ([*PZIP, "{v}/model.zip", "--env", "CMRSEG_CACHE={w}/afile.txt"], 2, "($CMRSEG_CACHE): is a file, expected a folder"),
    ([*PZIP, "{v}/model.zip", "--env", "CMRSEG_CACHE={w}/afile.txt/c"], 2, "($CMRSEG_CACHE): cannot be created"),
    ([*PZIP, "{v}/model.zip", "--env", "CMRSEG_CACHE=/proc/cmrseg-cache"], 2, "($CMRSEG_CACHE): cannot be created"),
    ([*PV, "{v}/vol_nan"], 2, "patient001_frame01.nii.gz: 1 voxel(s) are NaN or infinite"),
    ([*PV, "{v}/vol_2d"], 2, "patient001_frame01.nii.gz: expected a 3-D volume, got 2 dimensions"),
    ([*PV, "{v}/vol_ed_super"], 2, "patient002/Info.cfg: no ED frame number"),
    ([*PV, "{v}/vol_ed_long"], 2, "patient002/Info.cfg: no ED frame number"),
    ([*PV, "{v}/vol_ed_es"], 2, "patient002/Info.cfg: ED and ES are both frame 10"),
    ([*PV, "{v}/vol_two_folders"], 2, "both give the case id 'patient001_frame01'"),
    ([*PV, "{v}/flat_nii"], 2, "patient001_ED.nii.gz: both give the case id 'patient001_ED'"),
    ([*PV, "{v}/flat_lower"], 2, "both give the case id 'patient001_ed'"),
    ([*PV, "{v}/vol_mixed"], 2, "vol_mixed: mixes the flat and ACDC layouts"),
    (["evaluate", "--run", "{w}/run", "--data", "{v}/vol_pixdim"], 2, "patient001_frame01_gt.nii.gz: voxel size 1.6x1.6x5"),
    (["indices", "--masks", "{v}/vol_pixdim", "--out", "{v}/i.csv"], 2, "voxel size 1.6x1.6x5 (mm) differs"),
    *[(["predict", "--run", f"{{v}}/run_spacing_{name}", "--images", "{v}/acdc", "--out", "{v}/new_pred"], 2, words)
      for name, words in (("neg", "data.json: row spacing -1.6 mm is outside 0.1-10 mm"),
                          ("zero", "data.json: row spacing 0 mm is outside"),
                          ("str", "data.json: voxel spacing '1.6' is not two or three numbers"),
                          ("far", "data.json: row spacing 0.0016 mm is outside"),
                          ("fine", "patient001_frame01.nii.gz: resampling by 10.7x10.7 to the training spacing"))],
    *[(["predict", "--run", f"{{v}}/run_plan_{name}", "--images", "{v}/acdc", "--out", "{v}/new_pred"], 2, words)
      for name, words in (("neg", "plan.json: row spacing -1.6 mm is outside 0.1-10 mm"),
                          ("str", "plan.json: not a valid plan"))],
    ([*PZIP, "{v}/run_nan"], 2, "run_nan/best.pt: the network returned NaN or infinite scores"),
    pytest.param([*PZIP, "{v}/run_nan", "--engine", "onnxruntime"], 2, "the network returned NaN or infinite scores",
                 marks=ONNX),
    pytest.param([*PZIP, "{v}/one_channel.onnx", "--engine", "onnxruntime"], 2,
                 "one_channel.onnx: the network returned scores of shape (4, 1, 64, 64) for an input of (4, 1, 64, 64)",
                 marks=ONNX),
    pytest.param(["predict", "--run", "{v}/neg_spacing.onnx", "--engine", "onnxruntime", "--images", "{v}/acdc",
                  "--out", "{v}/new_pred"], 2, "neg_spacing.onnx (metadata training_data): row spacing -1.6 mm",
                 marks=ONNX),
    (["train", "--config", "{v}/cfg_apex.json", "--out", "{v}/new_run"], 2,
     "selects no training slice (the training volumes have base, mid slices only)"),
    (["evaluate", "--run", "{v}/vens_mixed"], 2, "members were validated on different splits"),
    ([*PV, "{v}/vol_micron"], 2, "patient001_frame01.nii.gz (header unit micron): row spacing 0.0016 mm is outside"),
    ([*PV, "{v}/vol_meter"], 2, "patient001_frame01.nii.gz (header unit meter): row spacing 1600 mm is outside"),
    (["indices", "--masks", "{v}/acdc", "--truth", "{v}/vol_small", "--out", "{v}/i.csv"], 2,
     "has shape (32, 32, 3), but the predicted patient001_frame01 has (48, 48, 3)"),
]


def _hash_all(*roots: Path) -> dict[str, dict[str, str]]:
    """File hashes under each of ``roots``, and its folders (a refused command must not leave an empty one)."""
    return {str(root): {**_hashes(root), **{str(p.relative_to(root)): "folder" for p in root.rglob("*") if p.is_dir()}}
            for root in roots}


@pytest.mark.parametrize(("argv", "code", "words"), CASES_24, ids=[f"case{i}" for i in range(len(CASES_24))])
def test_issue24_bad_command_says_one_line_and_changes_nothing(world: Path, w24: Path, argv: list[str], code: int,
                                                               words: str, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cache = Path(os.environ["CMRSEG_CACHE"])
    before = _hash_all(world, w24, cache)
    argv = [arg.replace("{w}", str(world)).replace("{v}", str(w24)) for arg in argv]
    if "--env" in argv:  # not a cmrseg option: an environment variable for this case only
        at = argv.index("--env")
        key, value = argv[at + 1].split("=", 1)
        monkeypatch.setenv(key, value)
        argv = argv[:at] + argv[at + 2:]
    assert main(argv) == code
    err = capsys.readouterr().err
    err = err[err.find("cmrseg: error: "):]  # after a progress bar where a volume is refused as it is read
    assert err.startswith("cmrseg: error: ") and err.count("\n") == 1 and words in err, err
    assert _hash_all(world, w24, cache) == before
    assert (w24 / "victim.txt").is_file()


def test_a_changed_cache_entry_is_unpacked_again_from_the_zip(world: Path, w24: Path) -> None:
    entry = runs.require_run_dir(w24 / "model.zip")
    original = (entry / runs.BEST_CHECKPOINT).read_bytes()
    shutil.copy(world / "run_other" / runs.BEST_CHECKPOINT, entry / runs.BEST_CHECKPOINT)
    with pytest.warns(UserWarning, match="best.pt changed since it was unpacked; unpacked .*model.zip again"):
        assert runs.require_run_dir(w24 / "model.zip") == entry
    assert (entry / runs.BEST_CHECKPOINT).read_bytes() == original
    (entry / runs.CONFIG_FILE).unlink()
    with pytest.warns(UserWarning, match="config.json missing"):
        runs.require_run_dir(w24 / "model.zip")
    assert (entry / runs.CONFIG_FILE).is_file()


def test_onnxruntime_graph_of_a_zip_is_exported_once_and_verified(w24: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from cmrseg.inference import onnx_engine
    from cmrseg.inference import PredictSettings, load_run

    calls = []
    real = onnx_engine.onnx_bytes
    monkeypatch.setattr(onnx_engine, "onnx_bytes", lambda *a, **k: calls.append(1) or real(*a, **k))
    settings = PredictSettings(engine="onnxruntime", tta=False)
    image = np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)
    cached = Path(os.environ["CMRSEG_CACHE"]) / onnx_engine.GRAPH_CACHE
    before = set(cached.glob(f"*/{onnx_engine.GRAPH_FILE}"))
    first = load_run(w24 / "model.zip", settings)[0].predict_proba([image])[0]
    second = load_run(w24 / "model.zip", settings)[0].predict_proba([image])[0]
    assert len(calls) == 1 and np.array_equal(first, second)
    graphs = sorted(set(cached.glob(f"*/{onnx_engine.GRAPH_FILE}")) - before)
    assert len(graphs) == 1
    graphs[0].write_bytes(b"not a graph")
    assert np.array_equal(load_run(w24 / "model.zip", settings)[0].predict_proba([image])[0], first)
    assert len(calls) == 2


@pytest.mark.parametrize(("spacing", "words"), [
    ([1.5, 1.5, 8.0], None), ((0.1, 10, 0.5), None), ((1, 1, 30), None), (None, None),
    ([0, 1, 8], "row spacing 0 mm"), ([1, -1, 8], "column spacing -1 mm"), ([1, 1, 0.4], "slice spacing 0.4 mm"),
    ([1, 1, 31], "slice spacing 31 mm"), ("abc", "is not two or three numbers"), ([1, 1, 5, 5], "is not two or three numbers"), ([1.5, 0.8], None),
    ([1, "1", 8], "is not two or three"), ([1, 1, float("nan")], "is not two or three"), ([True, 1, 8], "not two or three"),
])
def test_spacing_bounds(spacing: object, words: str | None) -> None:
    from cmrseg.data.spacing import check_factors, check_spacing

    if words is None:
        result = check_spacing(spacing, "src")
        assert result is None if spacing is None else result == tuple(float(v) for v in spacing)  # type: ignore[union-attr]
    else:
        with pytest.raises(CmrsegError, match=f"^src: .*{words}"):
            check_spacing(spacing, "src")
    assert check_factors((0.1, 10.0), "f") == (0.1, 10.0)
    with pytest.raises(CmrsegError, match="f: resampling by 0.05x1"):
        check_factors((0.05, 1.0), "f")


def test_long_but_legal_names_fit_the_temporary_names(world: Path, w24: Path, tmp_path: Path) -> None:
    from cmrseg.data.synth import write_synthetic_volumes

    flat = write_synthetic_volumes(tmp_path / "flat", patients=1, seed=2, size=48, slices=(3, 3), layout="flat")
    case = "c" * 239
    (flat / "patient001_ED.nii.gz").rename(flat / f"{case}.nii.gz")
    for path in flat.glob("patient001_*"):
        path.unlink()
    out = tmp_path / ("o" * 240)
    assert main(["predict", "--run", str(world / "run"), "--images", str(flat), "--out", str(out)]) == 0
    assert (out / f"{case}.nii.gz").is_file()
    png = tmp_path / "png" / "image"
    png.mkdir(parents=True)
    shutil.copy(world / "data" / "image" / "synth1.png", png / f"{'p' * 239}.png")
    assert main(["predict", "--run", str(world / "run"), "--images", str(png), "--out", str(out), "--overwrite"]) == 0
    assert (out / f"{'p' * 239}_mask.png").is_file()


def test_a_reexported_card_keeps_the_weights_date(world: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(world / "run", run)
    os.utime(run / runs.BEST_CHECKPOINT, (1_600_000_000, 1_600_000_000))
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "a.zip")]) == 0
    assert main(["export", "--run", str(tmp_path / "a.zip"), "--out", str(tmp_path / "b.zip")]) == 0
    for name in ("a.zip", "b.zip"):
        with zipfile.ZipFile(tmp_path / name) as archive:
            assert json.loads(archive.read("model_card.json"))["weights_saved"] == "2020-09-13T12:26:40+00:00"


def _children(pid: int) -> list[int]:
    """Live (not zombie) child processes of ``pid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads processes from /proc")
def test_workers_end_with_their_killed_parent(synth_dir: Path, tmp_path: Path) -> None:
    """A cv's workers; a sweep's run on the same engine (``cmrseg.workflows.sweep.engines.run_jobs``, checked in
    tests/test_sweep.py), so killing one command's workers covers both."""
    import time

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(tiny_config_dict(synth_dir, epochs=500)))
    out = tmp_path / "out"
    argv = ["cv", "--config", str(cfg), "--out", str(out), "--folds", "2", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "cmrseg", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while len([p for p in out.rglob(LOCK_FILE) if p.parent != out]) < 2:  # both workers are training
            assert time.monotonic() < deadline and proc.poll() is None, "the workers did not start training"
            time.sleep(0.2)
        workers = _children(proc.pid)
        assert len(workers) >= 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 5
    while any(map(_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_running, workers)), "workers outlived their killed parent"
    for lock in out.rglob(LOCK_FILE):
        with run_lock(lock.parent, "train"):  # not blocked by a dead worker
            pass


def _strict_json(path: Path) -> object:
    """``path`` parsed as strict JSON: a bare NaN or Infinity fails the test."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_json_results_write_null_for_undefined_numbers(world: Path, w24: Path, tmp_path: Path) -> None:
    from cmrseg.io.atomic import json_text

    assert json.loads(json_text({"a": float("nan"), "b": [np.float32("inf"), 1.5], "c": np.array([np.nan, 2.0])})) == {
        "a": None, "b": [None, 1.5], "c": [None, 2.0]}
    twins = tmp_path / "twins"  # two patients with the same volumes: the correlation of their indices is undefined
    shutil.copytree(w24 / "acdc", twins)
    for path in (twins / "patient001").iterdir():
        shutil.copy(path, twins / "patient002" / path.name.replace("patient001", "patient002"))
    assert main(["indices", "--masks", str(twins), "--truth", str(twins), "--out", str(tmp_path / "i.csv")]) == 0
    agreement = _strict_json(tmp_path / "i_agreement.json")
    assert agreement["LV_EF_pct"]["bias"] == 0.0 and agreement["LV_EF_pct"]["r"] is None
    assert main(["evaluate", "--run", str(world / "run"), "--data", str(world / "data"),
                 "--json", str(tmp_path / "m.json")]) == 0
    assert _strict_json(tmp_path / "m.json")["n_images"] == 4


def test_a_training_without_validation_claims_no_best_epoch(synth_dir: Path, world: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(tiny_config_dict(synth_dir, epochs=2, split_mode="full")))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "no validation split" in out and "nan" not in out
    assert main(["report", str(tmp_path / "run"), "--data", str(world / "data"), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "2/2 epochs; no validation split" in page and "at epoch" not in page
    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "m.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        card = json.loads(archive.read("model_card.json"), parse_constant=lambda c: pytest.fail(c))
        assert card["metrics"]["best"] is None and "no validation split" in archive.read("MODEL_CARD.md").decode()
