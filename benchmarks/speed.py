"""Issue #5 inference speed: images/s of a model on the CPU with a given thread count.

Times ``ModelPredictor.predict_proba`` (normalisation, forward, softmax; flip TTA, at zooms when asked) on the
100 training images, best of ``--repeats`` passes after one warm-up pass. With ``--run`` the trained
run's weights are used, otherwise the default model of ``ExperimentConfig`` (the recommended recipe) with random weights.

    .venv/bin/python benchmarks/speed.py --threads 2 [--run RUN_DIR] [--tta [--tta-scales 0.9 1.0 1.1]]

Each measurement is appended to ``benchmarks/results/speed.jsonl`` with the commit and the machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from cmrseg.config import ExperimentConfig
from cmrseg.data.normalization import Normalization
from cmrseg.data.input_spec import InputSpec
from cmrseg.data.slicing import load_folder
from cmrseg.inference import ModelPredictor, PredictSettings, load_run
from cmrseg.models import build_model
from cmrseg.commands.common import existing_folder
from cmrseg.utils import write_results

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=existing_folder, default="../shared/data/cmr96/train")
    parser.add_argument("--run", help="trained run folder (default: untrained default model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--tta-scales", type=float, nargs="+", default=[1.0], help="zooms of the TTA, e.g. 0.9 1.0 1.1")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = [s.image for s in load_folder(args.data, require_masks=False)]
    if args.run:
        predictor, _ = load_run(args.run, PredictSettings(tta=args.tta, tta_scales=args.tta_scales, device="cpu"))
        name = args.run
    else:
        info = ExperimentConfig().model_info
        predictor = ModelPredictor(build_model(info).eval(), InputSpec(normalization=Normalization("per_image")), torch.device("cpu"), tta=args.tta,
                                   tta_scales=tuple(args.tta_scales))
        name = f"default {info.name} depths={info.depths} features={info.features} input_scale={info.input_scale}"
    predictor.predict_proba(images)
    best = min(_timed(predictor, images) for _ in range(args.repeats))
    print(f"{name}: {len(images) / best:.0f} images/s ({args.threads} threads, tta={args.tta}, zooms {args.tta_scales}, {len(images)} images)")
    path = write_results(RESULTS / "speed.jsonl", {"model": name, "images_per_second": round(len(images) / best, 1),
                                                   "threads": args.threads, "tta": args.tta, "tta_scales": args.tta_scales,
                                                   "images": len(images)}, append=True)
    print(f"appended to {path}")


def _timed(predictor: ModelPredictor, images: list) -> float:
    started = time.perf_counter()
    predictor.predict_proba(images)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
