"""Run-length encoding in the origin study's Kaggle format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cmrseg.errors import CmrsegError
from cmrseg.workflows.submission import read_submission, rle_decode, rle_encode, write_submission


def test_rle_is_column_major_and_one_based() -> None:
    mask = np.array([[1, 0, 1], [1, 0, 1]], bool)
    # column-major order: (0,0)=1 (1,0)=2 (0,1)=3 (1,1)=4 (0,2)=5 (1,2)=6
    assert rle_encode(mask) == "1 2 5 2"
    assert rle_encode(np.zeros((2, 2), bool)) == ""
    assert rle_encode(np.ones((2, 2), bool)) == "1 4"


def test_round_trip_of_random_masks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    masks = {f"cmr{i}_mask": rng.integers(0, 4, size=(12, 9)).astype(np.uint8) for i in (121, 122, 130)}
    masks["cmr131_mask"] = np.zeros((12, 9), np.uint8)
    path = write_submission(masks, tmp_path / "sub.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "id,encoding" and len(lines) == 1 + 3 * 4
    assert lines[1].startswith("cmr121_mask1,") and lines[-1] == "cmr131_mask3,"
    decoded = read_submission(path, {k: v.shape for k, v in masks.items()})
    for key, mask in masks.items():
        assert np.array_equal(decoded[key], mask)
    for label in (1, 2, 3):
        assert np.array_equal(rle_decode(rle_encode(masks["cmr121_mask"] == label), (12, 9)), masks["cmr121_mask"] == label)


def test_bad_submission_lines_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,encoding\ncmr1_mask1,1 5 9\n")
    with pytest.raises(CmrsegError, match=r"bad.csv:2: bad encoding for 'cmr1_mask1'"):
        read_submission(bad, {"cmr1_mask": (4, 4)})
    bad.write_text("name,rle\n")
    with pytest.raises(CmrsegError, match="expected header 'id,encoding'"):
        read_submission(bad, {"cmr1_mask": (4, 4)})
