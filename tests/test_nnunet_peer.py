"""benchmarks/nnunet_peer.py's own logic (the folds it hands nnU-Net, the schedule it sizes), without nnU-Net."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from cmrseg.errors import CmrsegError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def peer():
    spec = importlib.util.spec_from_file_location("nnunet_peer", ROOT / "benchmarks" / "nnunet_peer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_schedule_fits_the_cpu_budget(peer) -> None:
    # this machine's measured cost: 175 CPU s an iteration, 54 s an epoch besides: one epoch, lengthened to 5 iterations
    assert peer.budget_schedule({"cpu_s_per_iteration": 175.0, "cpu_s_per_epoch_overhead": 54.0}, 17, 10) == (1, 5)
    cheap = {"cpu_s_per_iteration": 2.0, "cpu_s_per_epoch_overhead": 3.0}
    epochs, iterations = peer.budget_schedule(cheap, 17, 10)
    assert (epochs, iterations) == (44, 10) and epochs * (iterations * 2.0 + 3.0) <= 17 * 60


def test_folds_are_cmrseg_cv_folds_and_a_different_cv_is_refused(peer, tmp_path: Path) -> None:
    from cmrseg.data.synth import write_synthetic_volumes

    data = write_synthetic_volumes(tmp_path / "data", 4, size=32, slices=(2, 2))
    held_out = peer.fold_cases(data, ROOT / "configs" / "acdc_native.json", 2)
    patients = [{case.patient for case in fold} for fold in held_out]
    assert [len(fold) for fold in held_out] == [4, 4] and not patients[0] & patients[1]
    cv = tmp_path / "cv"
    cv.mkdir()
    rows = [f"{k},{case.case}_z00" for k, fold in enumerate(held_out) for case in fold]
    (cv / "cv_per_image.csv").write_text("fold,id\n" + "\n".join(rows) + "\n")
    assert "hold out the same cases" in peer.check_against_cv(held_out, cv)
    swapped = [f"{1 - k},{case.case}_z00" for k, fold in enumerate(held_out) for case in fold]
    (cv / "cv_per_image.csv").write_text("fold,id\n" + "\n".join(swapped) + "\n")
    with pytest.raises(CmrsegError, match=r"cv_per_image.csv: fold [01] held out \[.patient"):
        peer.check_against_cv(held_out, cv)
