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


def test_absent_in_both_counts_as_one_and_one_sided_as_zero() -> None:
    empty = np.zeros((4, 4), int)
    some = empty.copy()
    some[0, 0] = 1
    assert dice_score(empty, empty, 1) == 1.0
    assert dice_score(some, empty, 1) == 0.0
    assert hd95_score(empty, empty, 1) == 0.0
    assert math.isnan(hd95_score(some, empty, 1))


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
    assert summary["hd95"]["RV"] == 0.0  # image b's RV distance is undefined and left out
