"""Issue #3: every model of the zoo trained with one recipe on the real data, plus their ensemble.

Recipe: configs/unet.json (Adam 1e-3, poly LR, DiceCE, 'geometric' augmentation, batch 16, 80/20
patient split with seed 0) with only ``model_info`` changed. Big models get fewer epochs so the whole
table fits in about two hours on 2 CPU cores; the table says how many each got. Resumable: a model
whose run already finished is not trained again.

    python benchmarks/zoo.py train  [--models UNet DynUNet ...] [--epoch-scale 1.0] [--threads 1]
    python benchmarks/zoo.py speed  [--threads 2]          # inference images/s of each trained run
    python benchmarks/zoo.py table                          # benchmarks/results/zoo.csv + markdown
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from cmrseg import runs
from cmrseg.config import ModelInfo, apply_overrides, load_config
from cmrseg.data.slicing import load_folder
from cmrseg.workflows.ensemble import make_ensemble
from cmrseg.evaluation import evaluate_run
from cmrseg.inference import PredictSettings, images_per_second, load_run
from cmrseg.models.registry import FAMILY_KEYS, model_entry
from cmrseg.training.trainer import continue_run
from cmrseg.io.atomic import write_csv_atomic
from cmrseg.utils import write_results

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "zoo"
RESULTS = ROOT / "benchmarks" / "results"

# variant name -> (model_info overrides, epochs)
VARIANTS: dict[str, tuple[dict[str, object], int]] = {
    "UNet": ({"name": "UNet", "depths": 4}, 40),
    "DynUNet": ({"name": "DynUNet", "depths": 4}, 40),
    "AttentionUNet": ({"name": "AttentionUNet"}, 30),
    "SwinUNETR": ({"name": "SwinUNETR"}, 30),
    "EffUNet": ({"name": "EffUNet"}, 30),
    "DeepLab_v3/mobilenet": ({"name": "DeepLab_v3", "backbone": "mobilenet", "output_stride": 16}, 30),
    "DeepLab_v3/drn": ({"name": "DeepLab_v3", "backbone": "drn"}, 12),
    "DeepLab_v3/resnet": ({"name": "DeepLab_v3", "backbone": "resnet", "output_stride": 16}, 10),
    "DeepLab_v3/xception": ({"name": "DeepLab_v3", "backbone": "xception", "output_stride": 16}, 10),
    "SegNet": ({"name": "SegNet"}, 12),
    "FCN": ({"name": "FCN"}, 6),
}
ENSEMBLE_SIZE = 3


def _slug(variant: str) -> str:
    return variant.replace("/", "-")


def _finished(run_dir: Path) -> bool:
    return runs.run_state(run_dir) == "finished"


def _model_info(base: ModelInfo, overrides: dict[str, object]) -> dict[str, object]:
    """``overrides`` over the base config's model settings, keeping only the keys the variant's family reads."""
    accepts = model_entry(str(overrides["name"])).accepts
    kept = {key: value for key, value in base.model_dump().items() if key not in FAMILY_KEYS or key in accepts}
    return {**kept, **overrides}


def train_variants(names: list[str], epoch_scale: float, threads: int) -> None:
    base = load_config(ROOT / "configs" / "unet.json")
    for name in names:
        overrides, epochs = VARIANTS[name]
        run_dir = RUNS / _slug(name)
        if _finished(run_dir):
            print(f"{name}: finished already")
            continue
        config = apply_overrides(base, {"model_info": _model_info(base.model_info, overrides), "threads": threads,
                                        "epochs": max(1, round(epochs * epoch_scale))})
        print(f"{name}: training {config.epochs} epochs", flush=True)
        continue_run(config, run_dir, progress=False)


def _trained() -> list[str]:
    return [name for name in VARIANTS if _finished(RUNS / _slug(name))]


def build_ensemble() -> Path:
    """Soft-voting ensemble of the best ``ENSEMBLE_SIZE`` runs by validation Dice."""
    ranked = sorted(_trained(), key=lambda n: -evaluate_run(RUNS / _slug(n))["dice"]["mean"])
    members = ranked[:ENSEMBLE_SIZE]
    out = make_ensemble([RUNS / _slug(n) for n in members], RUNS / "Ensemble")
    (out / "members.json").write_text(json.dumps(members))
    return out


def measure_speed(threads: int) -> None:
    torch.set_num_threads(threads)
    images = [s.image for s in load_folder(ROOT.parent / "shared" / "data" / "cmr96" / "train", require_masks=False)]
    speeds = {}
    for name in [*_trained(), "Ensemble"]:
        run_dir = RUNS / _slug(name)
        if (run_dir / runs.CONFIG_FILE).is_file():
            speeds[name] = round(images_per_second(load_run(run_dir, PredictSettings(device="cpu"))[0], images), 1)
            print(f"{name}: {speeds[name]} images/s", flush=True)
    write_results(RESULTS / "zoo_speed.json", {"threads": threads, "images_per_second": speeds})


def table() -> None:
    if not (RUNS / "Ensemble").is_dir():
        build_ensemble()
    speed_file = RESULTS / "zoo_speed.json"
    speeds = json.loads(speed_file.read_text())["images_per_second"] if speed_file.is_file() else {}
    rows = []
    for name in [*_trained(), "Ensemble"]:
        run_dir = RUNS / _slug(name)
        summary = evaluate_run(run_dir)
        history = runs.read_history(run_dir)
        rows.append({
            "model": name if name != "Ensemble" else f"Ensemble ({', '.join(json.loads((run_dir / 'members.json').read_text()))})",
            "epochs": len(history) or "",
            **{f"dice_{k}": round(v, 3) for k, v in summary["dice"].items()},
            **{f"hd95_{k}": round(v, 2) for k, v in summary["hd95"].items()},
            "s_per_epoch": round(statistics.median(r["seconds"] for r in history), 1) if history else "",
            "images_per_s": speeds.get(name, ""),
        })
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(RESULTS / "zoo.csv", rows, list(rows[0]))
    write_results(RESULTS / "zoo.json", {"rows": rows})
    print("| model | epochs | RV | Myo | LV | mean Dice | HD95 mean (px) | s/epoch | images/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['epochs']} | {r['dice_RV']} | {r['dice_Myo']} | {r['dice_LV']} | **{r['dice_mean']}** | "
              f"{r['hd95_mean']} | {r['s_per_epoch']} | {r['images_per_s']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description="model zoo benchmark (issue #3)")
    parser.add_argument("phase", choices=["train", "speed", "table"])
    parser.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--epoch-scale", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.phase == "train":
        train_variants(args.models, args.epoch_scale, args.threads or 1)
    elif args.phase == "speed":
        measure_speed(args.threads or 2)
    else:
        table()


if __name__ == "__main__":
    main()
