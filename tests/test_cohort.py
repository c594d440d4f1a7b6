"""A cohort in one command: volumes published one by one, a rerun skips finished ones, the same outputs on 1 or 2
worker processes (and on Ray), each worker set up once with its share of the cores."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from cmrseg.cli import main
from cmrseg.errors import CmrsegError
from cmrseg.inference import PredictSettings, cohort
from cmrseg.inference import predict_folder
from cmrseg.io.outputs import MARKER_FILE, TEMP_TAG
from cmrseg.workers import run_in_processes, thread_share

from conftest import volume_run_fixture

cohort_run = volume_run_fixture("cohort_run", {"name": "UNet", "depths": 2, "features": 8}, "A tiny U-Net.")


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but the marker (which lists them), by relative name."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MARKER_FILE}


@pytest.fixture(scope="module")
def one_worker(cohort_run: Path, volumes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 8 phantom volumes predicted in this process, with indices."""
    out = tmp_path_factory.mktemp("cohort") / "one"
    cohort.predict_cohort(cohort_run, volumes_dir, out, indices=True, progress=False, log=lambda _: None)
    return out


def test_two_workers_write_the_same_files_as_one(one_worker: Path, cohort_run: Path, volumes_dir: Path,
                                                 tmp_path: Path) -> None:
    result = cohort.predict_cohort(cohort_run, volumes_dir, tmp_path / "two", indices=True, progress=False, workers=2,
                                   log=lambda _: None)
    expected = _files(one_worker)
    assert result.predicted == 8 and result.skipped == 0 and len(result.written) == 8
    assert sum(name.endswith(".nii.gz") for name in expected) == 8
    assert _files(tmp_path / "two") == expected  # labels byte for byte, cases.csv and indices.csv row for row
    rows = (one_worker / "cases.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == sorted(p.name.split(".")[0] for p in result.written)


def test_an_interrupted_cohort_keeps_whole_volumes_and_the_rerun_predicts_the_rest(
        one_worker: Path, cohort_run: Path, volumes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, calls, lines = tmp_path / "out", [], []
    real = cohort.predict_case

    def interrupted(*args: object) -> object:
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(cohort, "predict_case", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cohort.predict_cohort(cohort_run, volumes_dir, out, indices=True, progress=False, log=lines.append)
    assert lines == [f"interrupted: 3 of 8 volumes are predicted in {out}; the same command predicts the rest"]
    kept = _files(out)
    assert sorted(kept) == sorted([f"{cohort.RECORDS_DIR}/patient00{p}_frame{f}.json" for p, f in
                                   (("1", "01"), ("1", "10"), ("2", "01"))] +
                                  [f"patient00{p}_frame{f}.nii.gz" for p, f in (("1", "01"), ("1", "10"), ("2", "01"))])
    assert not [p for p in out.parent.rglob("*") if TEMP_TAG in p.name]
    assert set(json.loads((out / MARKER_FILE).read_text())["files"]) == set(kept)

    monkeypatch.setattr(cohort, "predict_case", real)
    lines.clear()
    result = cohort.predict_cohort(cohort_run, volumes_dir, out, indices=True, progress=False, log=lines.append)
    assert lines == [f"{out}: 3 of 8 volumes already predicted from the same input with the same run and settings; "
                     "skipped"]
    assert (result.predicted, result.skipped) == (5, 3)
    assert _files(out) == _files(one_worker)


def test_a_rerun_redoes_what_changed_and_refuses_what_it_did_not_write(one_worker: Path, cohort_run: Path,
                                                                       volumes_dir: Path, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "out"
    shutil.copytree(one_worker, out)
    (out / "patient003_frame01.nii.gz").write_bytes(b"half")  # listed as cmrseg's, but not what it wrote
    (out / "patient001_frame01.nii.gz").touch()
    lines: list[str] = []
    result = cohort.predict_cohort(cohort_run, volumes_dir, out, indices=True, progress=False, log=lines.append)
    assert (result.predicted, result.skipped) == (1, 7) and lines[0].startswith(f"{out}: 7 of 8 volumes")
    assert _files(out) == _files(one_worker)

    other = cohort.predict_cohort(cohort_run, volumes_dir, out, progress=False, log=lines.append,
                                  settings=PredictSettings(tta=True))
    assert (other.predicted, other.skipped) == (8, 0) and not (out / cohort.INDICES_FILE).exists()

    (out / f"{cohort.RECORDS_DIR}/patient001_frame01.json").unlink()
    (out / "notes.txt").write_text("mine")
    again = cohort.predict_cohort(cohort_run, volumes_dir, out, progress=False, log=lines.append,
                                  settings=PredictSettings(tta=True))
    assert (again.predicted, again.skipped) == (1, 7) and (out / "notes.txt").read_text() == "mine"

    marker = json.loads((out / MARKER_FILE).read_text())
    marker["files"].remove("patient002_frame10.nii.gz")
    (out / MARKER_FILE).write_text(json.dumps(marker))
    with pytest.raises(CmrsegError, match="patient002_frame10.nii.gz: exists and was not written by cmrseg predict"):
        cohort.predict_cohort(cohort_run, volumes_dir, out, progress=False, settings=PredictSettings(tta=True))


def test_cohort_options_on_the_command_line(cohort_run: Path, volumes_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["predict", "--run", str(cohort_run), "--images", str(volumes_dir), "--out", str(tmp_path / "p")]
    assert main([*base, "--workers", "0"]) == 2
    assert capsys.readouterr().err == "cmrseg: error: --workers must be at least 1, got 0\n"
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main([*base, "--ray-address", "local"]) == 2
    assert capsys.readouterr().err == "cmrseg: error: --ray-address needs Ray: pip install 'cmrseg[distributed]'\n"
    assert not (tmp_path / "p").exists()
    png = tmp_path / "png"
    png.mkdir()
    from PIL import Image
    import numpy as np

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(png / "a.png")
    with pytest.raises(CmrsegError, match="workers spread NIfTI volumes"):
        predict_folder(cohort_run, png, tmp_path / "q", workers=2)


def _threads_and_loads(marker: str) -> tuple[int, int, int]:
    """This worker's pid, torch threads and how many times it was set up (:func:`_setup_worker`)."""
    import torch

    return os.getpid(), torch.get_num_threads(), len(list(Path(marker).glob(f"{os.getpid()}-*")))


def _setup_worker(marker: str) -> None:
    """Stands in for loading a model: leaves one file per call."""
    Path(marker, f"{os.getpid()}-{len(list(Path(marker).glob(f'{os.getpid()}-*')))}").touch()


def test_each_worker_process_is_set_up_once_and_takes_its_share_of_the_cores(tmp_path: Path) -> None:
    jobs = {k: (str(tmp_path),) for k in range(6)}
    results = dict(run_in_processes(_threads_and_loads, jobs, 2, _setup_worker, (str(tmp_path),)))
    assert sorted(results) == list(range(6))
    loaded = sorted(path.name for path in tmp_path.iterdir())  # one file per set-up: "<pid>-<earlier set-ups>"
    assert 1 <= len(loaded) <= 2 and all(name.endswith("-0") for name in loaded)
    assert {f"{pid}-0" for pid, _, _ in results.values()} <= set(loaded)
    assert {(threads, loads) for _, threads, loads in results.values()} == {(thread_share(2), 1)}
    assert thread_share(2) == max(1, (os.cpu_count() or 1) // 2)


def test_ray_actors_write_the_same_files_as_one_process(one_worker: Path, cohort_run: Path, volumes_dir: Path,
                                                        tmp_path: Path) -> None:
    pytest.importorskip("ray")
    cohort.predict_cohort(cohort_run, volumes_dir, tmp_path / "ray", indices=True, progress=False, workers=2,
                          ray_address="local", log=lambda _: None)
    assert _files(tmp_path / "ray") == _files(one_worker)


def test_a_bad_volume_anywhere_in_the_folder_stops_the_cohort_before_anything_is_written(
        cohort_run: Path, volumes_dir: Path, tmp_path: Path) -> None:
    import shutil

    import nibabel as nib
    import numpy as np

    data = tmp_path / "data"
    shutil.copytree(volumes_dir, data)
    cine = data / "patient003" / "patient003_frame01.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((48, 48, 4, 3), np.uint8), np.eye(4)), str(cine))
    with pytest.raises(CmrsegError, match=r"patient003_frame01.nii.gz: 4-D \(cine\) volume with 3 frames"):
        cohort.predict_cohort(cohort_run, data, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    nib.save(nib.Nifti1Image(np.full((48, 48, 4), np.nan, np.float32), np.eye(4)),
             str(data / "patient001" / "patient001_frame01.nii.gz"))  # found only when its voxels are read
    shutil.rmtree(data / "patient003")
    with pytest.raises(CmrsegError, match="patient001_frame01.nii.gz: 9216 voxel"):
        cohort.predict_cohort(cohort_run, data, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if TEMP_TAG in p.name]
