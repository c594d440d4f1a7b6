"""Predict speed from an export zip, torch against onnxruntime, in one process (#24).

The recipe's network (configs/best.json: UNet, input_scale 2, flip and zoom TTA, clean-up), trained for one epoch on
16 phantoms (the weights do not change the speed), exported as a zip, predicts the 80 images of cmr96/test: with
torch, with onnxruntime twice (the first call exports the graph into the cache, the second reuses it), then with
torch again. Usage: ``PYTHONPATH=src python benchmarks/onnx_cache_speed.py [WORK_DIR]``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

WORK = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/cmrseg_onnx_cache_speed")
IMAGES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cmr96" / "test"


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    os.environ["CMRSEG_CACHE"] = str(WORK / "cache")
    from cmrseg.config import config_from_dict
    from cmrseg.data.synth import write_synthetic_dataset
    from cmrseg.workflows.export import export_run
    from cmrseg.inference import PredictSettings, predict_folder
    from cmrseg.training.trainer import train

    write_synthetic_dataset(WORK / "synth", count=16, size=96)
    config = json.loads((Path(__file__).resolve().parent.parent / "configs" / "best.json").read_text())
    config.update(epochs=1, dataset_info={"train_data_path": str(WORK / "synth")})
    train(config_from_dict(config), WORK / "run", progress=False)
    export_run(WORK / "run", WORK / "model.zip")
    seconds = {}
    for label, engine in (("torch", "torch"), ("onnxruntime, graph exported and cached", "onnxruntime"),
                          ("onnxruntime, cached graph", "onnxruntime"), ("torch again", "torch")):
        start = time.perf_counter()
        written = predict_folder(WORK / "model.zip", IMAGES, WORK / "preds" / engine,
                                 settings=PredictSettings(engine=engine), overwrite=True)
        seconds[label] = time.perf_counter() - start
        print(f"{label}: {len(written)} images in {seconds[label]:.1f} s", flush=True)
    torch_seconds = min(seconds["torch"], seconds["torch again"])
    print(f"onnxruntime (cached graph) speed / torch speed: {torch_seconds / seconds['onnxruntime, cached graph']:.2f}x")


if __name__ == "__main__":
    main()
