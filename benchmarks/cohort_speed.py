"""Issue #26 item 5: volumes per minute of ``cmrseg predict`` on a cohort folder with 1 and 2 local workers, in one run.

Writes ``--volumes`` synthetic native-size volumes (ED/ES phantoms on scanner grids of 1.25-1.8 mm, 192-256 px,
8-10 slices) and predicts the whole folder with :func:`cmrseg.inference.cohort.predict_cohort` once per worker
count, into a fresh output each time, timing the call as a user waits for it: worker start, model loading, every
volume, ``cases.csv`` and ``indices.csv``. One worker runs in this process with all ``--threads``; N workers get
``--threads``/N torch threads each. Without ``--run`` the native recipe (``configs/acdc_native.json``: its network,
plan and flip TTA) is trained for 1 epoch on two small phantom patients, which predicts at the recipe's cost. The
label files of every worker count are compared byte for byte.

    .venv/bin/python benchmarks/cohort_speed.py [--run RUN] [--volumes 20] [--workers 1 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from cmrseg.config import apply_overrides, load_config
from cmrseg.data.synth import write_synthetic_volumes
from cmrseg.errors import CmrsegError
from cmrseg.inference import PredictSettings
from cmrseg.inference.cohort import predict_cohort
from cmrseg.utils import write_results

ROOT = Path(__file__).resolve().parent.parent
GRIDS = ((1.25, 256), (1.5625, 216), (1.8, 192), (1.40625, 224))
"""(in-plane mm, pixels) of the phantom patients, in turn: the fields of view ACDC's scanners write."""


def recipe_run(scratch: Path) -> Path:
    """The native recipe after 1 epoch on two 2-slice phantom patients (its speed is the trained recipe's)."""
    from cmrseg.training.trainer import train

    data = write_synthetic_volumes(scratch / "train_phantoms", 0, seed=1, grids=GRIDS[1:3], slices=(2, 2))
    overrides = {"epochs": 1, "dataset_info.train_data_path": str(data), "plan.target_spacing": 1.5625}
    config = apply_overrides(load_config(ROOT / "configs" / "acdc_native.json"), overrides)
    return train(config, scratch / "run", progress=False).run_dir


def labels(out: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(out.glob("*.nii.gz"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="trained run folder or export zip (default: the native recipe, 1 epoch)")
    parser.add_argument("--volumes", type=int, default=20, help="phantom volumes in the cohort (ED and ES, even)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads in all")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="flip TTA (default: the run's config; the recipe's is on)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cohort_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    try:
        with tempfile.TemporaryDirectory() as scratch_name:
            scratch = Path(scratch_name)
            started = time.perf_counter()
            run = Path(args.run) if args.run else recipe_run(scratch)
            train_seconds = time.perf_counter() - started
            patients = max(1, args.volumes // 2)
            data = write_synthetic_volumes(scratch / "cohort", 0, seed=7, slices=(8, 10), with_labels=False,
                                           grids=[GRIDS[k % len(GRIDS)] for k in range(patients)])
            reference: dict[str, bytes] = {}
            for workers in args.workers:
                out = scratch / f"preds_{workers}"
                started = time.perf_counter()
                predict_cohort(run, data, out, settings=PredictSettings(tta=args.tta), indices=True, progress=False,
                               workers=workers, log=lambda line: None)
                seconds = time.perf_counter() - started
                same = labels(out) == (reference or labels(out))
                reference = reference or labels(out)
                results[str(workers)] = {"seconds": round(seconds, 1),
                                         "volumes_per_minute": round(60 * 2 * patients / seconds, 1),
                                         "threads_per_worker": max(1, args.threads // workers),
                                         "labels_identical_to_first": same}
                print(f"{workers} worker(s): {2 * patients} volumes in {seconds:.1f} s, "
                      f"{60 * 2 * patients / seconds:.1f} volumes/min, labels identical: {same}", flush=True)
    except CmrsegError as err:
        sys.exit(f"cohort_speed: error: {err}")
    first, last = str(args.workers[0]), str(args.workers[-1])
    report = {"run": args.run or "configs/acdc_native.json (1 epoch on 2 phantom patients)",
              "volumes": 2 * patients, "grids": [list(g) for g in GRIDS], "tta": args.tta, "threads": args.threads,
              "train_seconds": None if args.run else round(train_seconds, 1), "workers": results,
              "speedup": round(results[first]["seconds"] / results[last]["seconds"], 2)}
    print(Path(write_results(args.out, report)).read_text())


if __name__ == "__main__":
    main()
