"""benchmarks/qc_benchmark.py's flag measures: the ROC read-offs per volume and per patient, counted by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "qc_benchmark.py"


@pytest.fixture(scope="module")
def script() -> Any:
    spec = importlib.util.spec_from_file_location("qc_benchmark_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # as an import does: its dataclasses look it up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_best_at_specificity_picks_the_most_sensitive_cut_that_keeps_the_specificity(script: Any) -> None:
    # scores are 1 - qc_dice; 2.0 is a rule's flag. Positives: 0.5, 2.0, 0.1; negatives: 0.3, 0.2, 0.05, 0.0, 0.0
    score = np.array([0.5, 2.0, 0.1, 0.3, 0.2, 0.05, 0.0, 0.0])
    positive = np.array([True, True, True, False, False, False, False, False])
    best = script.best_at_specificity(score, positive, 0.80)
    # cut 0.3 flags 0.5, 2.0, 0.3: sensitivity 2/3, specificity 4/5; cut 0.1 would reach 3/3 but at 3/5
    assert best["sensitivity"] == pytest.approx(2 / 3) and best["specificity"] == pytest.approx(0.8)
    assert best["threshold"] == pytest.approx(0.7) and best["flagged"] == 3
    assert script.best_at_specificity(score, positive, 0.60)["sensitivity"] == pytest.approx(1.0)
    rules = script.best_at_specificity(np.array([2.0, 0.0]), np.array([True, False]), 1.0)
    assert rules["threshold"] is None and rules["sensitivity"] == 1.0  # only the rules' flag reaches it


def test_patient_rates_take_either_phase(script: Any) -> None:
    rows = [{"fold": 0, "stage": 4, "patient": p} for p in ("a", "a", "b", "b", "c", "c")]
    flagged = np.array([False, True, False, False, False, False])
    bad = np.array([False, True, False, False, True, False])  # patients a and c are bad
    score = np.array([0.1, 0.4, 0.3, 0.1, 0.2, 0.0])  # worst volume: a 0.4, b 0.3, c 0.2
    result = script.patient_rates(rows, flagged, bad, score)
    assert (result["n"], result["bad"], result["flagged"], result["flagged_bad"]) == (3, 2, 1, 1)
    assert result["roc_auc"] == pytest.approx(0.5)  # a above b, c below b
    assert result["at_specificity_0.80"]["sensitivity"] == pytest.approx(0.5)


def test_keep_cost_reads_the_earlier_timing_or_says_in_one_line_why_not(script: Any, tmp_path: Path) -> None:
    assert script.earlier_cost(tmp_path / "missing.json") is None
    earlier = tmp_path / "earlier.json"
    earlier.write_text('{"cost": {"ratio": 1.14}, "metadata": {"commit": "abc"}}')
    assert script.earlier_cost(earlier) == {"ratio": 1.14, "measured": {"commit": "abc"}}
    earlier.write_text("{not json")
    with pytest.raises(SystemExit, match="--keep-cost: .*earlier.json is not readable JSON"):
        script.earlier_cost(earlier)


def test_a_pool_reuses_the_cached_stages_and_predicts_only_the_others(script: Any, tmp_path: Path) -> None:
    cache = tmp_path / "pool.pkl"
    asked: list[set[tuple[int, int]]] = []

    def predict(have: set[tuple[int, int]]) -> list[dict[str, Any]]:
        asked.append(set(have))
        return [{"fold": f, "stage": s, "case": f"{f}-{s}"} for f in (0, 1) for s in (1, 12) if (f, s) not in have]

    first = script.reused_pool(cache, (12, 1), None, True, predict)
    assert asked == [set()] and [r["case"] for r in first] == ["0-12", "0-1", "1-12", "1-1"]
    second = script.reused_pool(cache, (1,), [1], True, predict)
    assert asked[1] == {(0, 1), (0, 12), (1, 1), (1, 12)} and [r["case"] for r in second] == ["1-1"]
    third = script.reused_pool(cache, (1,), None, False, predict)  # without reuse: predicted again
    assert asked[2] == set() and [r["case"] for r in third] == ["0-1", "1-1"]


def test_a_stage_the_fold_did_not_keep_comes_from_its_early_rerun(script: Any, tmp_path: Path) -> None:
    cv, early = tmp_path / "cv", tmp_path / "early"
    (cv / "fold_0" / "checkpoints").mkdir(parents=True)
    (cv / "fold_0" / "checkpoints" / "epoch_0004.pt").write_bytes(b"")
    assert script.stage_run(cv, early, 0, 4) == cv / "fold_0"
    assert script.stage_run(cv, early, 0, 1) == early / "fold_0"


def test_a_pooled_reference_predicts_each_volume_once(script: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stage of a fold is compared with the same reference segmentation, predicted once per volume."""
    from types import SimpleNamespace

    calls: list[str] = []

    def predict(self: Any, volume: Any) -> np.ndarray:
        calls.append(volume.case)
        return np.full((2, 2, 1), len(calls), np.uint8)

    monkeypatch.setattr(script.Reference, "mask", predict)
    reference = script.PooledReference(None, None, None, "fold_0")
    first, second = SimpleNamespace(case="a"), SimpleNamespace(case="b")
    assert [int(reference.mask(v)[0, 0, 0]) for v in (first, second, first, second)] == [1, 2, 1, 2]
    assert calls == ["a", "b"]


def test_a_folder_that_is_not_a_cv_is_refused_in_one_line_before_any_work(script: Any, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    cv = tmp_path / "cv"
    cv.mkdir()
    (cv / "config.json").write_text("{}")  # enough for the argument check, which runs before anything reads it
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv in (["--cv", str(empty)], ["--cv", str(cv), "--reference", str(empty)]):
        with pytest.raises(SystemExit) as exit_info:
            script.main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and f"argument {argv[-2]}: {empty}: not a `cmrseg cv` folder" in err


def test_only_the_reference_estimator_sees_the_reference_models_signals(script: Any) -> None:
    signals = {"view_dice": 0.9, "reference_dice": 0.8, "reference_voxels": {"LV": 10}, "missing": []}
    assert script.as_seen_by(signals, "reference") is signals
    assert script.as_seen_by(signals, "current") == {"view_dice": 0.9, "missing": []}
