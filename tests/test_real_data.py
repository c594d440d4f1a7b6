"""The real cmr96 data loads through the same reader (skipped cleanly where it is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmrseg.data.dataset import holdout_split
from cmrseg.data.reader import load_folder


def test_real_train_and_test_folders_load(real_data: Path) -> None:
    train = load_folder(real_data / "train")
    test = load_folder(real_data / "test", require_masks=False)
    assert len(train) == 100 and len(test) == 80
    assert train[1].id == "cmr2" and test[0].id == "cmr121"
    assert all(s.image.shape == (96, 96) and s.mask is not None and s.mask.max() <= 3 for s in train)
    assert all(s.mask is None for s in test)
    _, val = holdout_split([s.id for s in train], 0.2, seed=0)
    assert len(val) == 20 and all(np.any(s.mask) for s in train)
