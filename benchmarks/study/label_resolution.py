"""Issue #5: what one pixel of disagreement costs in Dice on the labeled slices themselves.

Scores every true mask against itself moved by one pixel (the mean over the 4 axis directions, and
over the 4 diagonal ones),
and against each structure grown or shrunk by a one-pixel rim, with the #2 convention (per image,
absent-in-both = 1). A model whose boundaries are off by about a pixel, as two annotators of a
96x96 slice can be, cannot score above these numbers; they bound what CV Dice can reach here.

    .venv/bin/python benchmarks/study/label_resolution.py ../shared/data/cmr96/train
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage

from cmrseg.constants import STRUCTURES
from cmrseg.data.slicing import load_folder
from cmrseg.metrics import summarize

AXIS_SHIFTS = [(-1, 0), (1, 0), (0, -1), (0, 1)]
DIAGONAL_SHIFTS = [(-1, -1), (-1, 1), (1, -1), (1, 1)]


def shifted(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by (dy, dx) pixels; the uncovered edge is background."""
    return ndimage.shift(mask, (dy, dx), order=0, mode="constant", cval=0)


def grown(mask: np.ndarray, label: int) -> np.ndarray:
    """Structure ``label`` widened by a one-pixel rim taken from its neighbours."""
    out = mask.copy()
    out[ndimage.binary_dilation(mask == label) & (mask != label)] = label
    return out


def shrunk(mask: np.ndarray, label: int) -> np.ndarray:
    """Structure ``label`` narrowed by its one-pixel rim, which goes to the neighbouring label."""
    inside = mask == label
    rim = inside & ~ndimage.binary_erosion(inside)
    neighbour = ndimage.grey_dilation(np.where(inside, 0, mask), size=3)
    out = mask.copy()
    out[rim] = neighbour[rim]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_dir", type=Path)
    args = parser.parse_args()
    samples = load_folder(args.train_dir, require_masks=True)
    ids, truths = [s.id for s in samples], [s.mask for s in samples]
    print(f"{len(truths)} labeled slices of {args.train_dir}\n")
    print("| change of the true mask | " + " | ".join(STRUCTURES) + " | mean |")
    print("|---|" + "---|" * (len(STRUCTURES) + 1))
    for name, shifts in (("along an axis (4 directions)", AXIS_SHIFTS), ("diagonally (4 directions)", DIAGONAL_SHIFTS)):
        per_shift = [summarize(ids, [shifted(m, dy, dx) for m in truths], truths)["dice"] for dy, dx in shifts]
        row = [np.mean([d[key] for d in per_shift]) for key in (*STRUCTURES, "mean")]
        print(f"| whole mask moved 1 px {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    for name, change in (("grown", grown), ("shrunk", shrunk)):
        cells = [summarize(ids, [change(m, label) for m in truths], truths)["dice"][structure]
                 for label, structure in enumerate(STRUCTURES, start=1)]
        print(f"| each structure {name} by a 1-px rim (alone) | " + " | ".join(f"{v:.3f}" for v in cells) + " |  |")


if __name__ == "__main__":
    main()
