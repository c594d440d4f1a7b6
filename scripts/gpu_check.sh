#!/usr/bin/env bash
# The CUDA check (#26): on a machine with a CUDA device, train a small native-resolution model for two epochs in
# float32 and in bfloat16, predict phantom volumes on the GPU and on the CPU, export zip and ONNX, and compare the
# masks voxel by voxel; then predict with the shipped model on both devices. Prints one line per check and a summary;
# exit 1 when a check fails. Where no CUDA device is found it says so and runs the CPU half only (exit 0).
# Usage: bash scripts/gpu_check.sh [OUT_DIR]      (default gpu_check_out/; about 2 minutes on a GPU)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-gpu_check_out}"
if [ -z "${CMRSEG_NO_SETUP:-}" ]; then source scripts/setup_env.sh; fi
PY="${PYTHON:-python}"
"$PY" - "$OUT" <<'EOF'
import json, shutil, sys, time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from cmrseg.cli import main
from cmrseg.data.synth import write_synthetic_volumes

out = Path(sys.argv[1])
shutil.rmtree(out, ignore_errors=True)  # the check's own scratch folder
cuda = torch.cuda.is_available()
devices = ["cpu", "cuda"] if cuda else ["cpu"]
print(f"torch {torch.__version__}; CUDA: {torch.cuda.get_device_name(0) if cuda else 'none (CPU half only)'}", flush=True)
grids = [(1.4, 192), (1.8, 160), (1.6, 176), (1.25, 224), (1.5, 176), (1.9, 144)]  # one (mm, pixels) per patient
train = write_synthetic_volumes(out / "train", patients=len(grids), seed=1, layout="acdc", grids=grids)
test = write_synthetic_volumes(out / "test", patients=2, seed=9, layout="flat", with_labels=False,
                               grids=[(1.6, 176), (1.3, 208)])
expected = len(list(test.glob("*.nii.gz")))
failures, results = [], {}


def check(name: str, ok: bool, detail: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    results[name] = {"ok": bool(ok), "detail": detail}
    if not ok:
        failures.append(name)


def masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(folder.glob("*.nii.gz"))}


def agreement(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return float(np.mean([np.mean(a[k] == b[k]) for k in a])) if a.keys() == b.keys() and a else 0.0


for precision in ("float32", "bfloat16"):
    run = out / f"run_{precision}"
    started = time.perf_counter()
    code = main(["train", "--config", "configs/acdc_native.json", "--data", str(train), "--out", str(run), "--epochs", "2",
                 "--quiet", "--set", f"precision={precision}", "--set", f"device={devices[-1]}", "--set", "batch_size=16"])
    seconds = time.perf_counter() - started
    history = (run / "history.csv").read_text().splitlines() if code == 0 else []
    check(f"train {precision} on {devices[-1]}", code == 0 and len(history) == 3, f"2 epochs in {seconds:.1f} s")
    predicted = {}
    for device in devices:
        started = time.perf_counter()
        folder = out / f"pred_{precision}_{device}"
        code = main(["predict", "--run", str(run), "--images", str(test), "--out", str(folder), "--device", device])
        predicted[device] = masks(folder) if code == 0 else {}
        check(f"predict {precision} run on {device}", code == 0 and len(predicted[device]) == expected,
              f"{len(predicted[device])} volumes in {time.perf_counter() - started:.1f} s")
    if cuda:
        same = agreement(predicted["cpu"], predicted["cuda"])
        check(f"CPU vs CUDA masks ({precision} run)", same >= 0.999, f"{100 * same:.3f} % of voxels equal")
    for fmt in ("zip", "onnx"):
        target = out / f"model_{precision}.{fmt}"
        code = main(["export", "--run", str(run), "--out", str(target)])
        check(f"export {fmt} ({precision} run)", code == 0 and target.stat().st_size > 0, f"{target.stat().st_size / 1e6:.2f} MB")
shipped = {}
for device in devices:
    started = time.perf_counter()
    folder = out / f"shipped_{device}"
    code = main(["predict", "--images", str(test), "--out", str(folder), "--device", device, "--indices"])
    shipped[device] = masks(folder) if code == 0 else {}
    check(f"shipped model on {device}", code == 0 and len(shipped[device]) == expected,
          f"{len(shipped[device])} volumes in {time.perf_counter() - started:.1f} s (first call, load included)")
if cuda:
    same = agreement(shipped["cpu"], shipped["cuda"])
    check("shipped model CPU vs CUDA masks", same >= 0.999, f"{100 * same:.3f} % of voxels equal")
(out / "gpu_check.json").write_text(json.dumps({"cuda": cuda, "torch": torch.__version__, "checks": results}, indent=2))
print(f"{len(results) - len(failures)} passed, {len(failures)} failed" + ("" if cuda else " (no CUDA device: CPU only)"))
sys.exit(1 if failures else 0)
EOF
