"""benchmarks/native_side_by_side.py's report: each side scored on the same held-out patients, per fold and pooled."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg.metrics.clinical import PhaseLabel, indices_table
from cmrseg.metrics.volumes import evaluate_volume

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "native_side_by_side.py"


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("native_side_by_side_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def heart(lv_radius: int) -> np.ndarray:
    """A 32x32x3 label volume: RV square, myocardial ring round a round LV of ``lv_radius``."""
    yy, xx = np.mgrid[:32, :32]
    distance = np.hypot(yy - 16, xx - 18)
    label = np.zeros((32, 32), np.uint8)
    label[distance <= lv_radius + 2] = 2
    label[distance <= lv_radius] = 3
    label[10:22, 3:9] = 1
    return np.repeat(label[:, :, None], 3, axis=2)


def scored(patients: dict[str, tuple[int, int]], shift: int) -> dict[str, Any]:
    """Rows as ``score_volume_masks`` writes them: each patient's ED and ES (LV radii), predicted ``shift`` voxels off."""
    rows, predicted, true = [], [], []
    for patient, radii in patients.items():
        for phase, radius in zip(("ED", "ES"), radii, strict=True):
            truth = heart(radius)
            pred = np.roll(truth, shift, axis=1)
            row = evaluate_volume(pred, truth, (1.5, 1.5, 8.0))
            row.update(case=f"{patient}_{phase}", patient=patient, phase=phase)
            rows.append(row)
            predicted.append(PhaseLabel.from_label(patient, phase, row["case"], pred, (1.5, 1.5, 8.0)))
            true.append(PhaseLabel.from_label(patient, phase, row["case"], truth, (1.5, 1.5, 8.0)))
    return {"per_volume": rows, "indices": indices_table(predicted), "true_indices": indices_table(true)}


def test_both_sides_are_scored_on_the_same_patients_per_fold_and_pooled() -> None:
    module = load_script()
    patients = {"p1": (9, 5), "p2": (8, 6), "p3": (10, 4), "p4": (7, 5), "p5": (9, 6)}
    native = scored(patients, 0)  # the native cv's file: every patient, predicted exactly
    folds = {0: ["p1", "p2"], 1: ["p4", "p5"]}  # p3's fold is not done
    acdc96 = {k: scored({p: patients[p] for p in held}, 2) for k, held in folds.items()}
    report = module.side_by_side({module.NATIVE: dict.fromkeys(folds, native), "acdc96": acdc96}, folds)
    pooled_native, pooled_acdc96 = report["pooled"][module.NATIVE], report["pooled"]["acdc96"]
    assert pooled_native["n_volumes"] == pooled_acdc96["n_volumes"] == 8
    assert pooled_native["volumes"]["all"]["dice"]["mean"] == 1.0
    assert 0.5 < pooled_acdc96["volumes"]["ED"]["dice"]["mean"] < 1.0
    assert pooled_native["agreement"]["LV_EF_pct"]["n"] == 4 and pooled_native["agreement"]["LV_EF_pct"]["sd"] == 0.0
    assert set(report["folds"]) == {"0", "1"} and report["folds"]["1"][module.NATIVE]["n_volumes"] == 4
    assert report["folds"]["0"]["acdc96"]["volumes"]["ES"]["n_volumes"] == 2
