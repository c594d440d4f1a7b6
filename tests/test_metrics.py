"""Dice and HD95 against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cmrseg.metrics import dice_score, hd95_score, image_metrics, summarize


def test_dice_by_hand_on_tiny_mask() -> None:
    truth = np.array([[1, 1, 0], [2, 2, 0], [0, 3, 3]])
    pred = np.array([[1, 0, 0], [2, 2, 2], [0, 0, 3]])
    # RV: |P|=1, |T|=2, overlap 1 -> 2/3. Myo: |P|=3, |T|=2, overlap 2 -> 4/5. LV: |P|=1, |T|=2, overlap 1 -> 2/3.
    assert dice_score(pred, truth, 1) == pytest.approx(2 / 3)
    assert dice_score(pred, truth, 2) == pytest.approx(0.8)
    assert dice_score(pred, truth, 3) == pytest.approx(2 / 3)
    assert image_metrics(pred, truth)["dice"]["mean"] == pytest.approx((2 / 3 + 0.8 + 2 / 3) / 3)


def test_absent_in_both_counts_as_one_and_one_sided_as_zero_dice_and_diagonal_hd95() -> None:
    empty = np.zeros((4, 4), int)
    some = empty.copy()
    some[0, 0] = 1
    assert dice_score(empty, empty, 1) == 1.0
    assert dice_score(some, empty, 1) == 0.0
    assert hd95_score(empty, empty, 1) == 0.0
    assert hd95_score(some, empty, 1) == pytest.approx(math.sqrt(4**2 + 4**2))
    assert hd95_score(empty, some, 1) == pytest.approx(math.sqrt(32))


def test_hd95_of_shifted_square() -> None:
    truth = np.zeros((20, 20), int)
    truth[5:10, 5:10] = 2
    pred = np.roll(truth, 3, axis=1)
    assert hd95_score(pred, truth, 2) == pytest.approx(3.0)
    assert hd95_score(truth, truth, 2) == 0.0


def test_summary_averages_per_image_first() -> None:
    truth = np.zeros((4, 4), int)
    truth[:2, :2] = 1
    perfect, empty = truth.copy(), np.zeros_like(truth)
    summary = summarize(["a", "b"], [perfect, empty], [truth, truth])
    assert summary["dice"]["RV"] == pytest.approx(0.5)
    assert summary["dice"]["Myo"] == summary["dice"]["LV"] == 1.0
    assert summary["dice"]["mean"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert [row["id"] for row in summary["per_image"]] == ["a", "b"]
    # image a: RV HD95 0; image b: RV missed, so its HD95 is the 4x4 diagonal; the miss can only hurt the mean
    assert summary["hd95"]["RV"] == pytest.approx((0.0 + math.sqrt(32)) / 2)
    assert summary["misses"] == {"RV": 1, "Myo": 0, "LV": 0}
    assert summary["false_detections"] == {"RV": 0, "Myo": 0, "LV": 0}


def test_misses_and_false_detections_by_hand() -> None:
    """3x5 masks (diagonal sqrt(34)): image 1 misses the LV and falsely detects Myo; image 2 misses the RV."""
    truth1 = np.array([[1, 1, 0, 0, 0], [0, 0, 0, 3, 3], [0, 0, 0, 3, 3]])
    pred1 = np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [2, 0, 0, 0, 0]])
    truth2 = np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    pred2 = np.zeros((3, 5), int)
    diagonal = math.sqrt(3**2 + 5**2)
    summary = summarize(["one", "two"], [pred1, pred2], [truth1, truth2])
    assert summary["misses"] == {"RV": 1, "Myo": 0, "LV": 1}
    assert summary["false_detections"] == {"RV": 0, "Myo": 1, "LV": 0}
    # RV: image one perfect (0), image two missed (diagonal). Myo: false detection (diagonal), absent in both (0).
    assert summary["hd95"]["RV"] == pytest.approx(diagonal / 2)
    assert summary["hd95"]["Myo"] == pytest.approx(diagonal / 2)
    assert summary["hd95"]["LV"] == pytest.approx(diagonal / 2)
    assert summary["per_image"][0]["hd95"]["mean"] == pytest.approx((0 + diagonal + diagonal) / 3)
    assert summary["dice"]["RV"] == pytest.approx(0.5) and summary["dice"]["LV"] == pytest.approx(0.5)


def test_masks_of_different_shapes_are_an_error() -> None:
    from cmrseg.errors import CmrsegError

    with pytest.raises(CmrsegError, match="shape"):
        dice_score(np.zeros((4, 4), int), np.zeros((4, 5), int), 1)
    with pytest.raises(CmrsegError, match="shape"):
        hd95_score(np.zeros((4, 4), int), np.zeros((5, 4), int), 1)


def test_volume_summary_splits_by_diagnosis_group_only_when_there_are_several() -> None:
    from cmrseg.metrics import evaluate_volume, summarize_volumes

    truth = np.zeros((8, 8, 2), np.uint8)
    truth[1:5, 1:5] = 3  # LV: 16 pixels per slice
    truth[5:7, 1:5] = 2
    truth[1:5, 5:7] = 1
    half = truth.copy()
    half[1:3, 1:5] = 0  # half of the LV missed: Dice 2*16/(32+16) = 2/3
    rows = []
    for group, pred in (("DCM", truth), ("NOR", half), ("NOR", truth)):
        row = evaluate_volume(pred, truth, None)
        row.update(phase="ED", group=group)
        rows.append(row)
    summary = summarize_volumes(rows)["volumes"]
    assert set(summary) == {"all", "ED", "group DCM", "group NOR"}
    assert summary["group DCM"]["n_volumes"] == 1 and summary["group DCM"]["dice"]["LV"] == pytest.approx(1.0)
    assert summary["group NOR"]["dice"]["LV"] == pytest.approx((2 / 3 + 1) / 2)
    assert summary["all"]["dice"]["LV"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    for row in rows:
        row["group"] = "NOR"
    assert set(summarize_volumes(rows)["volumes"]) == {"all", "ED"}
