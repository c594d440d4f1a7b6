"""Issue #25 prediction speed and memory on native-resolution volumes, in one run so the ratios compare.

For a trained run (default: the native recipe's untrained network, which costs the same), times the prediction of
whole volumes (resampling to the plan's spacing, every slice, probabilities back to the input grid, argmax and 3D
clean-up) without TTA and with the run's TTA, best of ``--repeats`` after a warm-up, on

- every volume of ``--data`` (default ``../shared/data/acdc_native``, up to ``--volumes`` of them), and
- a synthetic 512 x 512 x 18 volume at 0.7 mm, whose peak resident memory is measured in a fresh process.

and, for a shipped model (``--model NAME``), the first call's cost in fresh processes: importing cmrseg and loading
the model with an empty export cache (the zip is checked and unpacked) and with a warm one.

    .venv/bin/python benchmarks/native_speed.py [--run RUN | --model NAME] [--threads 2] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from cmrseg.commands.common import existing_folder
from cmrseg.config import load_config
from cmrseg.data.readers import list_cases, load_volume
from cmrseg.errors import CmrsegError
from cmrseg.inference import PredictSettings, load_run
from cmrseg.inference.volume_prediction import training_spacing, volume_mask, volume_probabilities
from cmrseg.utils import run_metadata

ROOT = Path(__file__).resolve().parent.parent


def untrained_run(folder: Path) -> Path:
    """A run folder of the native recipe trained for 0 useful steps (1 epoch on 2 phantom patients): same network, same
    plan rules, so its timing is the recipe's."""
    from cmrseg.config import apply_overrides
    from cmrseg.data.synth import write_synthetic_volumes
    from cmrseg.training.trainer import train

    data = write_synthetic_volumes(folder / "phantoms", 0, grids=[(1.5625, 216), (1.5625, 256)], slices=(2, 2))
    config = apply_overrides(load_config(ROOT / "configs" / "acdc_native.json"),
                             {"epochs": 1, "split_mode": "full", "dataset_info.train_data_path": str(data),
                              "plan.target_spacing": 1.5625})
    return train(config, folder / "run", progress=False).run_dir


def time_volumes(run: Path, volumes: list[Any], tta: bool, repeats: int) -> float:
    """Best seconds per volume of the whole prediction of ``volumes`` (mean over them)."""
    predictor, settings = load_run(run, PredictSettings(tta=tta))
    target = training_spacing(run)
    volume_mask(volume_probabilities(predictor, volumes[0], target), True)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for volume in volumes:
            volume_mask(volume_probabilities(predictor, volume, target), bool(settings.postprocess), settings.class_weights)
        best = min(best, time.perf_counter() - started)
    return best / len(volumes)


def peak_memory_mb(run: Path, threads: int) -> dict[str, float]:
    """Peak resident memory (MB) of a fresh process that predicts a 512 x 512 x 18 volume at 0.7 mm without TTA, and of
    one that only loads the run (the difference is what prediction adds)."""
    script = f"""
import resource, sys, torch
torch.set_num_threads({threads})
from pathlib import Path
from cmrseg.data.synth import write_synthetic_volumes
from cmrseg.data.readers import list_cases, load_volume
from cmrseg.inference import PredictSettings, load_run
from cmrseg.inference.volume_prediction import training_spacing, volume_mask, volume_probabilities
import tempfile
folder = Path(tempfile.mkdtemp())
data = write_synthetic_volumes(folder / "big", 0, grids=[(0.7, 512)], slices=(18, 18), with_labels=False)
volume = load_volume(list_cases(data, require_labels=False)[0], with_label=False)
predictor, _ = load_run(Path({str(run)!r}), PredictSettings(tta=False))
if sys.argv[1] == "predict":
    volume_mask(volume_probabilities(predictor, volume, training_spacing(Path({str(run)!r}))), True)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    result = {}
    for mode in ("load", "predict"):
        done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        result[mode] = round(float(done.stdout.strip().splitlines()[-1]), 1)
    return result


def load_seconds(model: str, threads: int) -> dict[str, float]:
    """Seconds from a fresh interpreter to a loaded shipped ``model`` (import included), cache cold then warm."""
    import os

    script = (f"import time; t = time.perf_counter(); import torch; torch.set_num_threads({threads}); import cmrseg; "
              f"cmrseg.load_pretrained({model!r}); print(time.perf_counter() - t)")
    result = {}
    with tempfile.TemporaryDirectory() as cache:
        for state in ("cold_cache", "warm_cache"):
            done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                  env={**os.environ, "CMRSEG_CACHE": cache})
            result[state] = round(float(done.stdout.strip().splitlines()[-1]), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=existing_folder, default=ROOT.parent / "shared" / "data" / "acdc_native")
    parser.add_argument("--run", help="trained run folder or export (default: the native recipe, untrained)")
    parser.add_argument("--model", help="a shipped model by name instead of --run (also times its first load)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--volumes", type=int, default=10, help="time this many volumes of --data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "native_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            if args.model:
                from cmrseg.pretrained_models import pretrained_path

                args.run = str(pretrained_path(args.model))
            run = Path(args.run) if args.run else untrained_run(Path(scratch))
            volumes = [load_volume(case, with_label=False)
                       for case in list_cases(args.data, require_labels=False)[: args.volumes]]
            plain = time_volumes(run, volumes, False, args.repeats)
            with_tta = time_volumes(run, volumes, True, args.repeats)
            memory = peak_memory_mb(run, args.threads)
            loading = load_seconds(args.model, args.threads) if args.model else None
    except CmrsegError as err:
        sys.exit(f"native_speed: error: {err}")
    shapes = sorted({v.image.shape for v in volumes})
    result = {"run": args.model or args.run or "configs/acdc_native.json (untrained)", "threads": args.threads,
              **({"first_load_seconds": loading} if loading else {}),
              "volumes": len(volumes), "shapes": [list(s) for s in shapes],
              "seconds_per_volume": round(plain, 3), "seconds_per_volume_tta": round(with_tta, 3),
              "tta_ratio": round(with_tta / plain, 2), "peak_rss_mb_512x512x18": memory, **run_metadata()}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
