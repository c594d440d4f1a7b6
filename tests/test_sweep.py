"""Sweeps: grid parsing, one run per choice with table and plots, resume, parallel workers, Ray stays optional."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from cmrseg.cli import main
from cmrseg.config import ExperimentConfig, load_config
from cmrseg.errors import CmrsegError
from cmrseg.workflows.sweep import parse_sets, run_sweep, split_choices, value_text

from conftest import tiny_config_dict

PNG = b"\x89PNG\r\n\x1a\n"


def _write_config(path: Path, train_dir: Path, **updates: object) -> Path:
    path.write_text(json.dumps(tiny_config_dict(train_dir, **updates)))
    return path


def _table(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "sweep.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_values_parse_as_json_and_lists_stay_whole() -> None:
    grid = parse_sets(["optimizer_info.lr=1e-1,1e-2", "tta=true,false", "criterion_info.name=Dice,Focal",
                       'augmentation=none,[{"name": "HorizontalFlip", "p": 0.5},{"name": "VerticalFlip"}]'])
    assert grid["optimizer_info.lr"] == [0.1, 0.01]
    assert grid["tta"] == [True, False]
    assert grid["criterion_info.name"] == ["Dice", "Focal"]
    assert grid["augmentation"][1] == [{"name": "HorizontalFlip", "p": 0.5}, {"name": "VerticalFlip"}]
    assert value_text(grid["augmentation"][1]) == "HorizontalFlip+VerticalFlip"
    assert split_choices('a,"b,c",{"x": [1, 2]}') == ["a", '"b,c"', '{"x": [1, 2]}']


@pytest.mark.parametrize("items, message", [
    ([], "at least one choice"),
    (["lr"], "expected KEY=V1"),
    (["epochs=1,,2"], "empty value"),
    (["epochs=1", "epochs=2"], "given twice"),
])
def test_bad_set_arguments_are_one_line_errors(items: list[str], message: str) -> None:
    with pytest.raises(CmrsegError, match=message):
        parse_sets(items)


def test_unknown_key_fails_before_any_training(synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write_config(tmp_path / "base.json", synth_dir)
    code = main(["sweep", "--config", str(config), "--set", "optimizer_info.learning_rate=1,2", "--out", str(tmp_path / "s")])
    assert code == 2
    assert capsys.readouterr().err.strip() == "cmrseg: error: unknown config key 'optimizer_info.learning_rate'"
    assert not (tmp_path / "s" / "runs").exists()


def test_sweep_writes_table_and_plots_then_resumes(synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write_config(tmp_path / "base.json", synth_dir, epochs=2)
    out = tmp_path / "sweep"
    args = ["sweep", "--config", str(config), "--set", "optimizer_info.lr=1e-2,1e-3", "--out", str(out), "--quiet"]
    assert main(args) == 0
    rows = _table(out)
    assert [row["choice"] for row in rows] == ["lr=0.01", "lr=0.001"]
    assert [row["optimizer_info.lr"] for row in rows] == ["0.01", "0.001"]
    for row in rows:
        assert row["status"] == "finished" and row["epochs_done"] == "2"
        assert 0.0 <= float(row["dice_mean"]) <= 1.0 and float(row["final_train_loss"]) > 0
        assert (out / row["run_dir"] / "best.pt").is_file()
    for plot in ("loss_curves.png", "best_dice.png"):
        assert (out / plot).read_bytes()[:8] == PNG
    assert json.loads((out / "sweep.json").read_text())["grid"] == {"optimizer_info.lr": [0.01, 0.001]}

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*.pt")}
    capsys.readouterr()
    assert main(args) == 0
    assert "0 trained, 2 skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*.pt")} == stamps

    first_epochs = {row["run_dir"]: Path(out / row["run_dir"] / "history.csv").read_text().splitlines()[:2] for row in rows}
    _write_config(config, synth_dir, epochs=3)
    assert main(args) == 0
    assert "2 trained, 0 skipped" in capsys.readouterr().out
    for row in _table(out):
        assert row["epochs_done"] == "3"
        assert Path(out / row["run_dir"] / "history.csv").read_text().splitlines()[:2] == first_epochs[row["run_dir"]]

    _write_config(config, synth_dir, epochs=3, batch_size=4)
    with pytest.raises(CmrsegError, match="holds a run of another config"):
        run_sweep(load_config(config), parse_sets(["optimizer_info.lr=1e-2,1e-3"]), out, log=lambda _: None)


def test_two_workers_train_choices_in_parallel(synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trials run on the shared job engine (whose workers end with a killed parent: tests/test_safety.py kills
    a cv's workers, the same engine's)."""
    from cmrseg.workflows.sweep import engines, runner

    engine_calls = []
    monkeypatch.setattr(runner, "run_jobs", lambda jobs, workers, *rest: engine_calls.append(workers)
                        or engines.run_jobs(jobs, workers, *rest))
    config = _write_config(tmp_path / "base.json", synth_dir, epochs=1, threads=None)
    result = run_sweep(load_config(config), parse_sets(["criterion_info.name=Dice,CrossEntropy"]), tmp_path / "sweep", workers=2, log=lambda _: None)
    assert engine_calls == [2]
    assert (result.trained, result.skipped, result.failed) == (2, 0, 0)
    assert sorted(row["status"] for row in result.rows) == ["finished", "finished"]
    assert {row["choice"] for row in _table(tmp_path / "sweep")} == {"name=Dice", "name=CrossEntropy"}


def test_seed_sweep_with_ensemble_writes_a_soft_vote_of_the_seeds(
    synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write_config(tmp_path / "base.json", synth_dir, epochs=1, split_seed=0, tta=True)
    out = tmp_path / "seeds"
    assert main(["sweep", "--config", str(config), "--set", "seed=0,1", "--workers", "2", "--ensemble",
                 "--out", str(out), "--quiet"]) == 0
    assert f"ensemble of the 2 runs: {out / 'ensemble'}" in capsys.readouterr().out
    saved = json.loads((out / "ensemble" / "config.json").read_text())
    members = [Path(m["run"]) for m in saved["model_info"]["options"]["members"]]
    assert sorted(m.name for m in members) == sorted(row["run_dir"].split("/")[-1] for row in _table(out))
    assert saved["tta"] is True and saved["split_seed"] == 0
    assert main(["evaluate", "--run", str(out / "ensemble")]) == 0


def test_no_ensemble_when_a_choice_fails(
    synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cmrseg.training.trainer

    original = cmrseg.training.trainer.continue_run

    def diverge_for_seed_1(config: ExperimentConfig, run_dir: Path, progress: bool = True) -> None:
        if config.seed == 1:
            raise CmrsegError("training diverged at epoch 1 (loss nan); lower optimizer_info.lr")
        original(config, run_dir, progress=progress)

    monkeypatch.setattr(cmrseg.training.trainer, "continue_run", diverge_for_seed_1)
    config = _write_config(tmp_path / "base.json", synth_dir, epochs=1)
    out = tmp_path / "sweep"
    assert main(["sweep", "--config", str(config), "--set", "seed=0,1", "--ensemble", "--out", str(out), "--quiet"]) == 1
    assert "no ensemble written: 1 choice(s) failed" in capsys.readouterr().err
    assert not (out / "ensemble").exists()


def test_ensemble_of_one_choice_is_a_one_line_error(synth_dir: Path, tmp_path: Path) -> None:
    config = _write_config(tmp_path / "base.json", synth_dir, epochs=1)
    with pytest.raises(CmrsegError, match="ensemble needs at least 2 choices"):
        run_sweep(load_config(config), parse_sets(["seed=3"]), tmp_path / "sweep", ensemble=True, log=lambda _: None)
    assert not (tmp_path / "sweep").exists()


def test_ray_address_without_ray_is_a_one_line_error(synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    config = _write_config(tmp_path / "base.json", synth_dir)
    with pytest.raises(CmrsegError, match=r"--ray-address needs Ray: pip install 'cmrseg\[distributed\]'"):
        run_sweep(load_config(config), parse_sets(["epochs=1,2"]), tmp_path / "sweep", ray_address="auto")
