"""Cross-validation: per-fold table and mean, resume skips finished folds, the fold ensemble evaluates."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from cmrseg import runs
from cmrseg.training import trainer as training
from cmrseg.workflows import crossval
from cmrseg.cli import main
from cmrseg.config import ExperimentConfig, PostprocessInfo, config_from_dict, load_config
from cmrseg.data.synth import write_synthetic_dataset
from cmrseg.errors import CmrsegError
from cmrseg.evaluation import evaluate_run
from cmrseg.models.unet import DEFAULT_DEPTH as UNET_DEFAULT_DEPTH
from cmrseg.training.trainer import clone_config, train
from cmrseg.io.atomic import csv_text

from conftest import tiny_config_dict


@pytest.fixture(scope="module")
def cv_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("cv") / "train", count=16, seed=5, size=64)


# how the fixture's folds predict: flip TTA at two zooms, which the fold ensemble must inherit
ZOOM_TTA = {"tta": True, "tta_scales": [1.0, 1.25]}


@pytest.fixture(scope="module")
def cv_run(cv_data: Path, tmp_path_factory: pytest.TempPathFactory) -> crossval.CvResult:
    config = config_from_dict(tiny_config_dict(cv_data, epochs=1, **ZOOM_TTA))
    return crossval.cross_validate(config, folds=2, out_dir=tmp_path_factory.mktemp("cvout") / "cv", ensemble=True, progress=False)


def test_table_has_every_fold_and_the_pooled_mean(cv_run: crossval.CvResult) -> None:
    assert [row["fold"] for row in cv_run.rows] == [0, 1, "mean"]
    folds, mean = cv_run.rows[:2], cv_run.rows[2]
    assert sum(row["n_images"] for row in folds) == mean["n_images"] == 16
    expected = sum(row["dice_RV"] * row["n_images"] for row in folds) / 16
    assert mean["dice_RV"] == pytest.approx(expected)
    assert mean["dice_mean"] == pytest.approx((mean["dice_RV"] + mean["dice_Myo"] + mean["dice_LV"]) / 3)
    with (cv_run.out_dir / "cv.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [row["fold"] for row in table] == ["0", "1", "mean"]
    assert float(table[2]["dice_mean"]) == pytest.approx(mean["dice_mean"])
    saved = json.loads((cv_run.out_dir / "cv.json").read_text())
    assert saved["folds"] == 2 and saved["mean"]["dice"]["mean"] == pytest.approx(mean["dice_mean"])
    ids = [row["id"] for row in csv.DictReader((cv_run.out_dir / "cv_per_image.csv").open())]
    assert len(ids) == len(set(ids)) == 16


def test_resume_skips_finished_folds(cv_run: crossval.CvResult, cv_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stamps = {k: (crossval.fold_dir(cv_run.out_dir, k) / "best.pt").stat().st_mtime_ns for k in (0, 1)}

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(training, "train", no_training)
    config = config_from_dict(tiny_config_dict(cv_data, epochs=1, **ZOOM_TTA))
    again = crossval.cross_validate(config, folds=2, out_dir=cv_run.out_dir, progress=False)
    assert again.rows == cv_run.rows
    saved = json.loads((cv_run.out_dir / "cv.json").read_text())
    assert saved["tta"] is True and saved["tta_scales"] == [1.0, 1.25]
    rescored = crossval.cross_validate(config.model_copy(update={"tta": False}), folds=2, out_dir=cv_run.out_dir, progress=False)
    saved = json.loads((cv_run.out_dir / "cv.json").read_text())
    assert len(rescored.rows) == 3 and saved["tta"] is False and saved["tta_scales"] == [1.0]
    assert rescored.rows[-1]["dice_mean"] != pytest.approx(cv_run.rows[-1]["dice_mean"])
    all_rv = PostprocessInfo(class_weights=[1e-6, 1e6, 1e-6, 1e-6])
    weighted = crossval.cross_validate(config.model_copy(update={"postprocess": all_rv}), folds=2, out_dir=cv_run.out_dir, progress=False)
    assert weighted.rows[-1]["dice_LV"] == 0.0 < cv_run.rows[-1]["dice_LV"]
    assert json.loads((cv_run.out_dir / "cv.json").read_text())["class_weights"] == all_rv.class_weights
    assert all((crossval.fold_dir(cv_run.out_dir, k) / "best.pt").stat().st_mtime_ns == stamps[k] for k in (0, 1))
    other = config_from_dict(tiny_config_dict(cv_data, epochs=2))
    with pytest.raises(CmrsegError, match="another config"):
        crossval.cross_validate(other, folds=2, out_dir=cv_run.out_dir, progress=False)


def test_unfinished_fold_is_resumed_not_restarted(cv_data: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config_dict(cv_data, epochs=2))
    partial = crossval.fold_dir(tmp_path / "cv", 0)
    train(clone_config(config, folds=2, fold=0), partial, epochs=1, progress=False)
    first_epoch = runs.read_history(partial)[0]
    assert runs.epochs_done(partial) == 1
    result = crossval.cross_validate(config, folds=2, out_dir=tmp_path / "cv", only=[0], progress=False)
    assert [row["fold"] for row in result.rows] == [0, "mean"]
    history = runs.read_history(partial)
    assert [row["epoch"] for row in history] == [1, 2] and history[0] == first_epoch


def test_fold_ensemble_is_a_run_folder_that_evaluates(cv_run: crossval.CvResult, cv_data: Path) -> None:
    assert cv_run.ensemble_dir == cv_run.out_dir / "ensemble"
    summary = evaluate_run(cv_run.ensemble_dir, cv_data)
    assert summary["n_images"] == 16 and 0.0 <= summary["dice"]["mean"] <= 1.0
    assert summary["tta"] is True and summary["tta_scales"] == [1.0, 1.25]


def test_cli_prints_the_table_and_rejects_bad_folds(cv_run: crossval.CvResult, cv_data: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config_path = tmp_path / "cfg.json"
    config_path.write_text(json.dumps(tiny_config_dict(cv_data, epochs=1)))
    assert main(["cv", "--config", str(config_path), "--folds", "2", "--out", str(cv_run.out_dir), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Dice RV" in printed and "mean" in printed
    assert main(["cv", "--config", str(config_path), "--folds", "1", "--out", str(tmp_path / "x")]) == 2
    assert "at least 2" in capsys.readouterr().err


def test_config_defaults_train_what_best_json_trains() -> None:
    """An origin-style config that omits the recipe keys trains the cross-validated recipe."""
    best = load_config(Path(__file__).resolve().parent.parent / "configs" / "best.json")
    defaults = ExperimentConfig(dataset_info=best.dataset_info).model_dump(mode="json")
    defaults["model_info"]["depths"] = defaults["model_info"]["depths"] or UNET_DEFAULT_DEPTH
    recipe = best.model_dump(mode="json")
    prediction_and_data = ("split_mode", "threads", "tta", "tta_scales", "postprocess")
    assert {k: v for k, v in defaults.items() if k not in prediction_and_data} == \
        {k: v for k, v in recipe.items() if k not in prediction_and_data}
    assert recipe["tta"] and recipe["postprocess"]["largest_component"]


def _without_times(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in row.items() if k != "train_minutes"} for row in rows]


def _sequential_csv(cv_run: crossval.CvResult) -> str:
    """cv.csv as the fixture's sequential run wrote it (later tests rewrite the file itself), without times."""
    return csv_text(_without_times(cv_run.rows), [c for c in crossval.TABLE_COLUMNS if c != "train_minutes"])


def _csv_without_times(out_dir: Path) -> str:
    with (out_dir / "cv.csv").open() as handle:
        rows = _without_times(list(csv.DictReader(handle)))
    return csv_text(rows, [c for c in crossval.TABLE_COLUMNS if c != "train_minutes"])


def test_two_local_workers_give_the_sequential_table(cv_run: crossval.CvResult, cv_data: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config_dict(cv_data, epochs=1, **ZOOM_TTA))
    result = crossval.cross_validate(config, folds=2, out_dir=tmp_path / "cv", progress=False, workers=2)
    assert _without_times(result.rows) == _without_times(cv_run.rows)
    assert _csv_without_times(result.out_dir) == _sequential_csv(cv_run)
    assert all(runs.run_state(crossval.fold_dir(result.out_dir, k)) == "finished" for k in (0, 1))


@pytest.mark.parametrize(("extra", "message"), [
    (["--workers", "0"], "--workers must be at least 1, got 0"),
    (["--ray-address", "local"], r"--ray-address needs Ray: pip install 'cmrseg\[distributed\]'"),
])
def test_bad_engine_arguments_fail_before_anything_is_written(
    extra: list[str], message: str, cv_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    config_path = tmp_path / "cfg.json"
    config_path.write_text(json.dumps(tiny_config_dict(cv_data, epochs=1)))
    assert main(["cv", "--config", str(config_path), "--folds", "2", "--out", str(tmp_path / "cv"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err)
    assert not (tmp_path / "cv").exists()


def test_ray_local_mode_gives_the_sequential_table(cv_run: crossval.CvResult, cv_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    config = config_from_dict(tiny_config_dict(cv_data, epochs=1, **ZOOM_TTA))
    result = crossval.cross_validate(config, folds=2, out_dir=tmp_path / "cv", progress=False, ray_address="local")
    assert _csv_without_times(result.out_dir) == _sequential_csv(cv_run)
