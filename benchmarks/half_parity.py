"""Do float16 weights predict the same masks as float32? (#26: the shipped model stores float16 weights.)

Exports one run twice (float32 and float16 weights, :func:`cmrseg.export.export_run`), predicts the same volumes
with both (torch, float32 arithmetic, the run's TTA and clean-up) and reports the share of equal voxels and the Dice
between the two masks per structure, in one run.

    .venv/bin/python benchmarks/half_parity.py --run RUN [--data ../shared/data/acdc_native] [--volumes 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from cmrseg.commands.common import existing_folder
from cmrseg.constants import STRUCTURES
from cmrseg.data.readers import list_cases, load_volume
from cmrseg.errors import CmrsegError
from cmrseg.workflows.export import export_run
from cmrseg.inference import load_run
from cmrseg.inference.volume_prediction import training_spacing, volume_mask, volume_probabilities
from cmrseg.metrics.slices import dice_score
from cmrseg.utils import run_metadata

ROOT = Path(__file__).resolve().parent.parent


def masks(run: Path, volumes: list) -> list[np.ndarray]:
    predictor, settings = load_run(run)
    target = training_spacing(run)
    return [volume_mask(volume_probabilities(predictor, v, target), bool(settings.postprocess), settings.class_weights)
            for v in volumes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="trained run folder (float32 weights)")
    parser.add_argument("--data", type=existing_folder, default=ROOT.parent / "shared" / "data" / "acdc_native")
    parser.add_argument("--volumes", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "half_parity.json"))
    args = parser.parse_args()
    try:
        cases = list_cases(args.data, require_labels=False)
        volumes = [load_volume(case, with_label=False) for case in cases[:: max(1, len(cases) // args.volumes)][: args.volumes]]
        with tempfile.TemporaryDirectory() as scratch:
            full = masks(export_run(args.run, Path(scratch) / "float32.zip"), volumes)
            half = masks(export_run(args.run, Path(scratch) / "float16.zip", half=True), volumes)
    except CmrsegError as err:
        sys.exit(f"half_parity: error: {err}")
    equal = [float(np.mean(a == b)) for a, b in zip(full, half, strict=True)]
    dice = {s: float(np.mean([dice_score(b, a, i + 1) for a, b in zip(full, half, strict=True)]))
            for i, s in enumerate(STRUCTURES)}
    result = {"run": args.run, "volumes": [v.case for v in volumes], "equal_voxels_mean": round(float(np.mean(equal)), 6),
              "equal_voxels_min": round(min(equal), 6), "dice_float16_vs_float32": {k: round(v, 5) for k, v in dice.items()},
              **run_metadata()}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
