"""Issue #14: slices/s of the recipe model in torch and in onnxruntime, side by side in one run.

The model is ``configs/best.json``'s ``model_info`` with untrained weights (speed does not depend on
them), per-image normalisation, on ``--threads`` CPU threads for both engines. Every row times
``ModelPredictor.predict_proba`` (normalisation, forward, softmax, TTA) on ``--images`` slices of
``--data``, best of ``--repeats`` passes after a warm-up, without TTA, with flip TTA and with the
recipe's zoom TTA (flips at zooms 0.9/1.0/1.1), at batch 1 and batch 8. ``torch, one view per call``
is the predictor before #14 (each flip and zoom a separate forward call); ``torch`` batches all views
of a batch into calls of ``view_batch`` images; ``torch bfloat16`` is that predictor with ``--precision bfloat16``.
First-call latency: building the network (torch) or
the session from the ``.onnx`` file (onnxruntime) plus predicting one slice.

    PYTHONPATH=src .venv/bin/python benchmarks/onnx_speed.py --data ../shared/data/cmr96/test --threads 2 [--images 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cmrseg.config import ModelInfo
from cmrseg.data.normalization import Normalization
from cmrseg.data.input_spec import InputSpec
from cmrseg.data.readers.png import list_images, load_image
from cmrseg.formats.onnx import minimum_size, onnx_bytes, onnx_metadata
from cmrseg.inference import ModelPredictor
from cmrseg.models import build_model
from cmrseg.inference.onnx_engine import OnnxNetwork, make_session
from cmrseg.commands.common import existing_folder
from cmrseg.utils import write_results

REPO = Path(__file__).resolve().parent.parent
TTA_MODES = {"no TTA": (False, (1.0,)), "flip TTA": (True, (1.0,)), "zoom TTA 0.9/1.0/1.1": (True, (0.9, 1.0, 1.1))}


def _seconds(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def slices_per_second(predictor: ModelPredictor, images: list[np.ndarray], repeats: int) -> float:
    """Best of ``repeats`` passes over ``images`` after a warm-up on a few of them."""
    predictor.predict_proba(images[: max(2, predictor.batch_size)])
    return len(images) / min(_seconds(lambda: predictor.predict_proba(images)) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=existing_folder, default="../shared/data/cmr96/test", help="folder of PNG slices (or with image/)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = [load_image(path) for path in list_images(args.data)[: args.images]]
    info = ModelInfo.model_validate(json.loads((REPO / "configs" / "best.json").read_text())["model_info"])
    normalization = Normalization("per_image")
    workdir = tempfile.TemporaryDirectory(prefix="cmrseg-onnx-speed-")
    onnx_file = Path(workdir.name) / "recipe.onnx"

    started = time.perf_counter()
    model = build_model(info).eval()
    torch_base = ModelPredictor(model, InputSpec(normalization=normalization), torch.device("cpu"))
    torch_base.predict_proba(images[:1])
    torch_first = time.perf_counter() - started
    export_seconds = _seconds(lambda: onnx_file.write_bytes(onnx_bytes(model, onnx_metadata(InputSpec(normalization=normalization), {}))))
    started = time.perf_counter()
    onnx_base = dataclasses.replace(torch_base, model=OnnxNetwork(make_session(onnx_file, args.threads), minimum_size(model)))
    onnx_base.predict_proba(images[:1])
    onnx_first = time.perf_counter() - started

    engines = {"torch, one view per call": lambda b: dataclasses.replace(torch_base, batch_size=b, view_batch=b),
               "torch": lambda b: dataclasses.replace(torch_base, batch_size=b),
               "torch bfloat16": lambda b: dataclasses.replace(torch_base, batch_size=b, precision="bfloat16"),
               "onnxruntime": lambda b: dataclasses.replace(onnx_base, batch_size=b)}
    rows = []
    for mode, (tta, scales) in TTA_MODES.items():
        for batch in (1, 8):
            speeds = {name: slices_per_second(dataclasses.replace(make(batch), tta=tta, tta_scales=scales), images,
                                              args.repeats) for name, make in engines.items()}
            rows.append((mode, batch, speeds))
            print(f"{mode:<22} batch {batch}: " + ", ".join(f"{k} {v:.1f}" for k, v in speeds.items()), flush=True)

    names = list(engines)
    print(f"\n{info.name} depths={info.depths} features={info.features} input_scale={info.input_scale}, "
          f"{args.threads} threads, {len(images)} slices of {images[0].shape[0]}x{images[0].shape[1]}, best of {args.repeats}\n")
    print("| TTA | batch | " + " | ".join(f"{n} slices/s" for n in names)
          + " | onnxruntime / torch one view | onnxruntime / torch | torch bfloat16 / torch |")
    print("|---|---|" + "---|" * (len(names) + 3))
    for mode, batch, speeds in rows:
        print(f"| {mode} | {batch} | " + " | ".join(f"{speeds[n]:.1f}" for n in names)
              + f" | {speeds['onnxruntime'] / speeds[names[0]]:.1f}x | {speeds['onnxruntime'] / speeds['torch']:.1f}x"
              + f" | {speeds['torch bfloat16'] / speeds['torch']:.1f}x |")
    print(f"\nfirst call (build + 1 slice): torch {torch_first * 1000:.0f} ms; onnxruntime session from the .onnx file "
          f"{onnx_first * 1000:.0f} ms; torch.onnx.export of the model {export_seconds:.1f} s")
    print("wrote", write_results(Path(__file__).resolve().parent / "results" / "onnx_speed.json", {
        "threads": args.threads, "slices": len(images), "repeats": args.repeats,
        "slices_per_second": [{"tta": mode, "batch": batch, **speeds} for mode, batch, speeds in rows],
        "first_call_seconds": {"torch": torch_first, "onnxruntime": onnx_first, "export": export_seconds}}))
    workdir.cleanup()


if __name__ == "__main__":
    main()
