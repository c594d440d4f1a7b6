"""Issue #14: what else could make the recipe network faster on the CPU, side by side in one run.

Times one forward pass of a batch of 96x96 slices (no TTA) through the recipe architecture
(``configs/best.json``'s ``model_info``) with trained weights from ``--run`` (any run of that
architecture), in each way below, on ``--threads`` threads, best of ``--repeats`` timings of
``--calls`` calls after a warm-up. Each way is also compared with torch eager on the same slices:
the largest probability difference and the share of pixels whose argmax differs.

- torch eager, channels-last (what ``ModelPredictor`` runs);
- ``torch.jit.freeze`` + ``optimize_for_inference`` of a trace;
- ``torch.compile`` (inductor; its compile time is reported);
- bfloat16 autocast (the CPU has AVX512-BF16);
- onnxruntime on the exported fp32 graph (``--engine onnxruntime``);
- onnxruntime on a static int8 quantisation of it (QDQ, per-channel weights, calibrated on 16 slices).

    PYTHONPATH=src .venv/bin/python benchmarks/study/speed_levers.py --run runs/acdc_cv/every_slice/fold_0 \
        --data ../shared/data/cmr96/test --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cmrseg.data.readers.png import list_images, load_image
from cmrseg.formats.onnx import onnx_bytes, onnx_metadata
from cmrseg.inference import PredictSettings, load_run
from cmrseg.inference.onnx_engine import make_session
from cmrseg.commands.common import existing_folder

Forward = Callable[[torch.Tensor], torch.Tensor]


def best_seconds(forward: Forward, batch: torch.Tensor, calls: int, repeats: int) -> float:
    """Best over ``repeats`` of the mean time of ``calls`` forward calls, after two warm-up calls."""
    forward(batch)
    forward(batch)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            forward(batch)
        timings.append((time.perf_counter() - started) / calls)
    return min(timings)


def int8_session(fp32: Path, calibration: np.ndarray, threads: int) -> object:
    """onnxruntime session of ``fp32`` statically quantised to int8 (QDQ), calibrated on ``calibration``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"image": image[None]} for image in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    prepared, quantized = fp32.with_name("pre.onnx"), fp32.with_name("int8.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return make_session(quantized, threads)


def session_forward(session: object) -> Forward:
    name = session.get_inputs()[0].name  # type: ignore[attr-defined]
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained run of the recipe architecture")
    parser.add_argument("--data", type=existing_folder, default="../shared/data/cmr96/test")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor, _ = load_run(args.run, PredictSettings(device="cpu", tta=False))
    model = predictor.model.eval()
    slices = np.stack([predictor.spec.normalization.apply(load_image(p)) for p in list_images(args.data)])[:, None]
    batch = torch.from_numpy(slices[: args.batch]).contiguous()
    workdir = tempfile.TemporaryDirectory(prefix="cmrseg-levers-")
    fp32 = Path(workdir.name) / "fp32.onnx"
    fp32.write_bytes(onnx_bytes(model, onnx_metadata(predictor.spec, {})))

    def bf16(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x.contiguous(memory_format=torch.channels_last)).float()

    with torch.inference_mode():
        started = time.perf_counter()
        compiled = torch.compile(model, dynamic=False)
        compiled(batch)
        compile_seconds = time.perf_counter() - started
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, batch)))
        ways: dict[str, Forward] = {
            "torch eager, channels-last": lambda x: model(x.contiguous(memory_format=torch.channels_last)),
            "torch.jit.freeze": frozen,
            f"torch.compile (compile {compile_seconds:.0f} s)": compiled,
            "torch bf16 autocast": bf16,
            "onnxruntime fp32": session_forward(make_session(fp32, args.threads)),
            "onnxruntime int8 (static QDQ)": session_forward(int8_session(fp32, slices[-16:], args.threads)),
        }
        everything = torch.from_numpy(slices)
        reference = torch.softmax(torch.cat([model(chunk) for chunk in everything.split(args.batch)]), 1)
        rows = []
        for name, forward in ways.items():
            seconds = best_seconds(forward, batch, args.calls, args.repeats)
            probs = torch.softmax(torch.cat([forward(chunk) for chunk in everything.split(args.batch)]).float(), 1)
            rows.append((name, args.batch / seconds, float((probs - reference).abs().max()),
                         float((probs.argmax(1) != reference.argmax(1)).float().mean())))
    base = rows[0][1]
    print(f"{args.batch} slices per call, {args.threads} threads, best of {args.repeats} x {args.calls} calls; "
          f"agreement on {len(slices)} slices of {args.data}\n")
    print("| way | slices/s | vs torch eager | max prob diff | pixels with another argmax |\n|---|---|---|---|---|")
    for name, speed, diff, changed in rows:
        print(f"| {name} | {speed:.1f} | {speed / base:.2f}x | {diff:.1e} | {100 * changed:.3f} % |")
    workdir.cleanup()


if __name__ == "__main__":
    main()
