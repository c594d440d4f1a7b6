"""Issue #11: how ACDC's annotators label the two phases differently: where the RV and the LV start (first slice from the
base holding the structure) at end-systole against end-diastole, per patient, from the true masks alone.

    PYTHONPATH=src .venv/bin/python benchmarks/study/acdc_phase_extents.py [--data ../shared/data/acdc96]
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from cmrseg.data.readers import read_volumes
from cmrseg.commands.common import existing_folder

RV, MYO, LV = 1, 2, 3


def first_slice(label: np.ndarray, classes: tuple[int, ...]) -> int:
    """Index of the first slice (base first) holding any of ``classes``; -1 when none does."""
    present = np.isin(label, classes).any(axis=(0, 1))
    return int(np.argmax(present)) if present.any() else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=existing_folder, default="../shared/data/acdc96")
    args = parser.parse_args()
    starts: dict[str, dict[str, tuple[int, int]]] = {}
    for volume in read_volumes(args.data):
        starts.setdefault(volume.patient, {})[volume.phase or "?"] = (first_slice(volume.label, (RV,)),
                                                                      first_slice(volume.label, (MYO, LV)))
    pairs = [phases for phases in starts.values() if {"ED", "ES"} <= set(phases)]
    for index, name in ((0, "RV"), (1, "LV and Myo")):
        shifts = Counter(phases["ES"][index] - phases["ED"][index] for phases in pairs)
        print(f"{name}: first slice at ES minus at ED, over {len(pairs)} patients: "
              + ", ".join(f"{shift:+d}: {count}" for shift, count in sorted(shifts.items())))


if __name__ == "__main__":
    main()
