"""Issue #11: does a 3D network on whole volumes beat the 2D phase recipe in the same 15 CPU minutes a fold?

A screen, not a library feature: an anisotropic 3D U-Net (MONAI ``DynUNet``, in-plane-only 1x3x3 kernels on the two
finest levels, 3x3x3 below, one through-plane down-sampling, as nnU-Net plans thick-slice short-axis stacks) trained on
the whole training volumes of a fold of the same patient-wise 5-fold split as ``benchmarks/acdc_volumes.py``, with
the phase recipe's inputs and training (``configs/acdc_phase.json``: per-slice z-score, the phase plane as a second
channel, its albumentations pipeline applied with one draw to every slice of a volume, DiceCE, Adam, poly with a
warm-up epoch), float32 (bfloat16 3D convolutions are far slower on this CPU), ``--epochs`` epochs.

Per fold it reports the trainer's validation metric (per-slice Dice of the held-out slices, no TTA; phase_bf16's last
epochs scored 0.833 / 0.829 / 0.824 / 0.825 / 0.820 on folds 0-4) and, with flip TTA and the largest 3D component,
the per-volume Dice and EF agreement of ``cmrseg evaluate``. Fold models and results are kept in ``--runs``, so a
stopped screen resumes at the next fold.

    PYTHONPATH=src .venv/bin/python benchmarks/study/acdc_3d.py [--data ../shared/data/acdc96] [--runs runs/acdc_3d]
        [--folds 0 1] [--epochs 13] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import DynUNet

from cmrseg.commands.common import existing_folder
from cmrseg.config import ExperimentConfig, apply_overrides, load_config
from cmrseg.constants import STRUCTURES
from cmrseg.data.normalization import Normalization
from cmrseg.data.transforms import build_pipeline
from cmrseg.data.readers import Volume, list_cases, load_volume
from cmrseg.evaluation.volume_scoring import config_validation_volumes, score_volume_masks
from cmrseg.inference.volume_prediction import volume_mask
from cmrseg.metrics import batch_dice
from cmrseg.training.optim import lr_factor
from cmrseg.training.trainer import clone_config
from cmrseg.io.atomic import torch_save_atomic, write_json_atomic
from cmrseg.utils import run_metadata

ROOT = Path(__file__).resolve().parent.parent.parent
FOLDS = 5
BATCH = 2
KERNELS = [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
STRIDES = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [1, 2, 2]]
FILTERS = [16, 32, 64, 128, 256]
Z_MULTIPLE = 2
"""Stacks are padded (with blank slices labelled background) to a multiple of the one through-plane stride."""


def build_network() -> DynUNet:
    """Two input channels (image, phase plane), four classes; instance norm, so a batch of two is fine."""
    return DynUNet(3, 2, 4, kernel_size=KERNELS, strides=STRIDES, upsample_kernel_size=STRIDES[1:], filters=FILTERS,
                   norm_name="instance", res_block=False)


def network_input(image: np.ndarray, volume: Volume) -> np.ndarray:
    """``2 x Z x H x W`` float32 of ``volume``'s ``H x W x Z`` uint8 stack ``image`` (itself or augmented): each slice
    z-scored, and the phase plane of the library's phase condition (ED -1, ES +1)."""
    stack = Normalization.fit([], "per_image").apply_channels(np.ascontiguousarray(image.transpose(2, 0, 1)))
    plane = np.full_like(stack, volume.conditions(("phase",), 0)[0])
    return np.stack([stack, plane]).astype(np.float32)


def augmented(volume: Volume, pipeline: Any) -> tuple[np.ndarray, np.ndarray]:
    """Network input and ``Z x H x W`` labels of ``volume`` after one draw of ``pipeline`` applied to all slices."""
    out = pipeline(image=volume.image, mask=volume.label)
    return network_input(out["image"], volume), out["mask"].transpose(2, 0, 1).astype(np.int64)


def pad_z(arrays: list[np.ndarray], axis: int) -> np.ndarray:
    """Stack ``arrays`` after padding their ``axis`` with zeros to the longest, rounded up to :data:`Z_MULTIPLE`."""
    longest = max(a.shape[axis] for a in arrays)
    target = -(-longest // Z_MULTIPLE) * Z_MULTIPLE
    padded = []
    for array in arrays:
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, target - array.shape[axis])
        padded.append(np.pad(array, widths))
    return np.stack(padded)


def train_fold(config: ExperimentConfig, volumes: list[Volume], epochs: int, seed: int) -> tuple[DynUNet, list[float]]:
    """The fold's 3D network after ``epochs`` epochs over its training volumes; returns it and the epoch times."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    pipeline = build_pipeline(config.augmentation, seed=seed)
    model = build_network()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optimizer_info.lr,
                                 weight_decay=config.optimizer_info.weight_decay)
    steps = -(-len(volumes) // BATCH)
    total, warmup = epochs * steps, config.scheduler.warmup_epochs * steps
    base_lr = config.optimizer_info.lr
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(config.scheduler, step, total, warmup, base_lr))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    seconds = []
    for epoch in range(epochs):
        started, order, losses = time.perf_counter(), rng.sample(volumes, len(volumes)), []
        model.train()
        for start in range(0, len(order), BATCH):
            pairs = [augmented(volume, pipeline) for volume in order[start:start + BATCH]]
            images = torch.from_numpy(pad_z([p[0] for p in pairs], axis=1))
            labels = torch.from_numpy(pad_z([p[1] for p in pairs], axis=0)).unsqueeze(1)
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        seconds.append(time.perf_counter() - started)
        print(f"epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.4f}, {seconds[-1]:.1f} s", flush=True)
    return model, seconds


@torch.no_grad()
def volume_probs(model: DynUNet, volume: Volume, tta: bool) -> np.ndarray:
    """``C x H x W x Z`` softmax of one volume (mean over the four in-plane flips with ``tta``)."""
    model.eval()
    image = torch.from_numpy(pad_z([network_input(volume.image, volume)], axis=1))
    flips = [[], [3], [4], [3, 4]] if tta else [[]]
    total = sum(torch.softmax(model(image.flip(dims)), 1).flip(dims) for dims in flips) / len(flips)
    return total[0, :, :volume.n_slices].permute(0, 2, 3, 1).numpy()


def slice_dice(volumes: list[Volume], probs: list[np.ndarray]) -> dict[str, float]:
    """The trainer's validation metric: per-slice Dice of every held-out slice (plain argmax)."""
    preds = np.concatenate([p.argmax(0).transpose(2, 0, 1) for p in probs])
    truths = np.concatenate([v.label.transpose(2, 0, 1) for v in volumes])
    return batch_dice(preds, truths)


def run_fold(config: ExperimentConfig, every: list[Volume], fold: int, epochs: int, out: Path) -> dict[str, Any]:
    fold_config = clone_config(config, folds=FOLDS, fold=fold)
    held_out = config_validation_volumes(fold_config)
    patients = {v.patient for v in held_out}
    training = [v for v in every if v.patient not in patients]
    model, seconds = train_fold(config, training, epochs, config.seed + fold)
    torch_save_atomic(model.state_dict(), out / f"fold_{fold}.pt")
    plain = [volume_probs(model, v, tta=False) for v in held_out]
    started = time.perf_counter()
    tta = [volume_probs(model, v, tta=True) for v in held_out]
    per_volume_tta = (time.perf_counter() - started) / len(held_out)
    masks = [volume_mask(p, True, None) for p in tta]
    scored = score_volume_masks(held_out, masks)
    return {"fold": fold, "train_minutes": round(sum(seconds) / 60, 2), "epochs": epochs,
            "seconds_per_epoch": [round(s, 1) for s in seconds], "val_slice_dice": slice_dice(held_out, plain),
            "seconds_per_volume_tta": per_volume_tta, "cases": [v.case for v in held_out],
            "per_volume": [{k: row[k] for k in ("case", "phase", "group", "dice")} for row in scored["per_volume"]],
            "indices": scored["indices"], "true_indices": scored["true_indices"]}


def pooled(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-volume Dice and EF agreement over every finished fold's held-out volumes."""
    from cmrseg.metrics.clinical import agreement

    rows = [row for f in folds for row in f["per_volume"]]
    dice = {k: float(np.mean([row["dice"][k] for row in rows])) for k in (*STRUCTURES, "mean")}
    indices = [r for f in folds for r in f["indices"]]
    true = [r for f in folds for r in f["true_indices"]]
    agree = agreement(indices, true)
    return {"n_volumes": len(rows), "dice": dice,
            **{k: {m: agree[k][m] for m in ("bias", "sd", "r")} for k in ("LV_EF_pct", "RV_EF_pct")}}


FOLD_KEYS = {"fold", "train_minutes", "epochs", "val_slice_dice", "seconds_per_volume_tta", "per_volume", "indices",
             "true_indices"}
"""What :func:`run_fold` records and the report reads."""


def fail(message: str) -> NoReturn:
    """A user's mistake: one line on stderr, exit 2."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def read_fold(path: Path) -> dict[str, Any]:
    """A finished fold's results, or a one-line exit naming a file this script did not write."""
    try:
        fold = json.loads(path.read_text())
    except ValueError as err:
        fail(f"{path}: not a fold result of this script ({err}); move it away to train that fold again")
    if not isinstance(fold, dict) or not FOLD_KEYS <= fold.keys():
        fail(f"{path}: not a fold result of this script (expected the keys {sorted(FOLD_KEYS)}); "
             "move it away to train that fold again")
    return fold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=existing_folder, default=str(ROOT.parent / "shared" / "data" / "acdc96"))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "acdc_3d"))
    parser.add_argument("--folds", type=int, nargs="+", default=list(range(FOLDS)))
    parser.add_argument("--epochs", type=int, default=13, help="13 fill the 15-minute fold budget on 2 cores")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = apply_overrides(load_config(ROOT / "configs" / "acdc_phase.json"),
                             {"dataset_info.train_data_path": str(args.data)})
    out = Path(args.runs)
    if out.exists() and not out.is_dir():
        fail(f"--runs {out}: is a file, expected a folder for the fold models and results")
    out.mkdir(parents=True, exist_ok=True)
    every = [load_volume(case) for case in list_cases(args.data)]
    folds = []
    for fold in args.folds:
        done = out / f"fold_{fold}.json"
        if not done.is_file():
            if (out / f"fold_{fold}.pt").exists():
                fail(f"{out / f'fold_{fold}.pt'}: a fold model without its results ({done.name}); this script would "
                     "overwrite it, so move it away first")
            write_json_atomic(done, run_fold(config, every, fold, args.epochs, out))
        folds.append(read_fold(done))
        print(f"fold {fold}: val slice Dice {folds[-1]['val_slice_dice']['mean']:.3f}, "
              f"{folds[-1]['train_minutes']} min", flush=True)
    report = {**run_metadata(ROOT), "folds": [{k: f[k] for k in ("fold", "train_minutes", "epochs", "val_slice_dice",
                                                                  "seconds_per_volume_tta")} for f in folds],
              "pooled": pooled(folds)}
    write_json_atomic(ROOT / "benchmarks" / "study" / "results" / "acdc_3d.json", report)
    print(json.dumps(report["pooled"], indent=1, default=float))


if __name__ == "__main__":
    main()
