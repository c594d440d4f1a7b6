"""Soft-voting ensemble of trained runs: a run folder that evaluate and predict accept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cmrseg.cli import main
from cmrseg.config import ModelInfo, config_from_dict
from cmrseg.data.slicing import load_folder
from cmrseg.workflows.ensemble import make_ensemble
from cmrseg.errors import CmrsegError
from cmrseg.inference import load_run
from cmrseg.models import available_models, build_model
from cmrseg.training.trainer import train

from conftest import tiny_config_dict


@pytest.fixture(scope="module")
def two_runs(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("ens")
    first = config_from_dict(tiny_config_dict(synth_dir, epochs=1))
    second = config_from_dict(tiny_config_dict(
        synth_dir, epochs=1, normalization="per_image", seed=1,
        model_info={"name": "UNet", "depths": 1, "features": 8, "input_channels": 3},
    ))
    train(first, root / "a", progress=False)
    train(second, root / "b", progress=False)
    return [root / "a", root / "b"]


def test_ensemble_averages_member_probabilities(two_runs: list[Path], synth_dir: Path, tmp_path: Path) -> None:
    out = make_ensemble(two_runs, tmp_path / "ens", weights=[3.0, 1.0])
    images = [s.image for s in load_folder(synth_dir)[:3]]
    ensemble, _ = load_run(out)
    members = [load_run(run)[0] for run in two_runs]
    expected = [0.75 * a + 0.25 * b for a, b in zip(members[0].predict_proba(images), members[1].predict_proba(images))]
    for got, want in zip(ensemble.predict_proba(images), expected):
        assert got.shape == (4, 64, 64)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_ensemble_run_folder_evaluates_and_predicts(two_runs: list[Path], synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ensemble", *map(str, two_runs), "--out", str(tmp_path / "ens")]) == 0
    assert main(["evaluate", "--run", str(tmp_path / "ens"), "--data", str(synth_dir), "--json", str(tmp_path / "m.json")]) == 0
    assert "Dice" in capsys.readouterr().out
    assert main(["predict", "--run", str(tmp_path / "ens"), "--images", str(synth_dir), "--out", str(tmp_path / "pred")]) == 0
    assert len(list((tmp_path / "pred").glob("*_mask.png"))) == 24


def test_ensemble_is_self_contained_once_written(two_runs: list[Path], synth_dir: Path, tmp_path: Path) -> None:
    import shutil

    copies = [tmp_path / "a", tmp_path / "b"]
    for src, dst in zip(two_runs, copies):
        shutil.copytree(src, dst)
    out = make_ensemble(copies, tmp_path / "ens")
    images = [s.image for s in load_folder(synth_dir)[:2]]
    before = load_run(out)[0].predict_proba(images)
    for copy in copies:
        shutil.rmtree(copy)
    after = load_run(out)[0].predict_proba(images)
    np.testing.assert_allclose(before[0], after[0])


def test_ensemble_errors(two_runs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(CmrsegError, match="at least 2 run folders"):
        make_ensemble(two_runs[:1], tmp_path / "e")
    with pytest.raises(CmrsegError, match="2 weights for 3 runs|3 weights for 2 runs"):
        make_ensemble(two_runs, tmp_path / "e", weights=[1, 2, 3])
    with pytest.raises(CmrsegError, match=r"tta_scales must be one or more zoom factors in \[0.5, 2\], got \[0.1\]"):
        make_ensemble(two_runs, tmp_path / "e", tta=True, tta_scales=[0.1])
    with pytest.raises(CmrsegError, match="run folder not found"):
        make_ensemble([two_runs[0], tmp_path / "missing"], tmp_path / "e")
    assert not (tmp_path / "e").exists()
    assert "Ensemble" not in available_models() and "Ensemble" in available_models(composite=True)
    with pytest.raises(CmrsegError, match="options.members"):
        build_model(ModelInfo(name="Ensemble"))
