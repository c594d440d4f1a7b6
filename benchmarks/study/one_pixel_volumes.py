"""Issue #11: what a copy of the true labels moved by one pixel scores on acdc96, per volume and on the kept slices.

Every label volume is rolled by one pixel in-plane in each of the four directions and scored against itself (3D Dice per
structure, and the cmr96 2D Dice of the kept coursework slice); the table averages the four directions over the 100
volumes. A model whose boundaries are off by one pixel everywhere scores this; the #11 targets are read against it.

    PYTHONPATH=src .venv/bin/python benchmarks/study/one_pixel_volumes.py [--data ../shared/data/acdc96]
"""

from __future__ import annotations

import argparse

import numpy as np

from cmrseg.constants import STRUCTURES
from cmrseg.data.readers import list_cases, load_volume
from cmrseg.metrics import dice_score
from cmrseg.commands.common import existing_folder

SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=existing_folder, default="../shared/data/acdc96")
    args = parser.parse_args()
    volume_rows, kept_rows = [], []
    for case in list_cases(args.data):
        volume = load_volume(case)
        truth = volume.label
        z = int(volume.info[f"CourseworkSlice{volume.phase}"])
        for shift in SHIFTS:
            moved = np.roll(truth, shift, axis=(0, 1))
            volume_rows.append([dice_score(moved, truth, label) for label in (1, 2, 3)])
            kept_rows.append([dice_score(moved[:, :, z], truth[:, :, z], label) for label in (1, 2, 3)])
    print(f"| truth moved 1 px ({len(volume_rows) // len(SHIFTS)} volumes x 4 directions) | "
          + " | ".join(STRUCTURES) + " | mean |\n|---|---|---|---|---|")
    for name, rows in (("per volume, 3D", volume_rows), ("kept coursework slice, 2D", kept_rows)):
        means = np.mean(rows, axis=0)
        print(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {means.mean():.3f} |")


if __name__ == "__main__":
    main()
