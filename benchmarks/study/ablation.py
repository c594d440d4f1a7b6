"""Issue #5 ablation: each recipe lever on/off, scored by patient-wise cross-validation on cmr96/train.

Every variant is ``cmrseg cv`` of a config in benchmarks/study/configs/ plus ``--set`` overrides, on the
folds given (screening: fold 0; the final recipe: all 5). Eval-only levers (TTA, largest component)
re-score a finished variant without training. Results are appended to runs/acc/ablation.jsonl and
printed as a Markdown table (CV Dice per structure of the final-epoch weights, training minutes).

    .venv/bin/python benchmarks/study/ablation.py --folds 0            # screening, one fold
    .venv/bin/python benchmarks/study/ablation.py --only final --folds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from cmrseg.config import RECIPE_AUGMENTATION, apply_overrides, load_config
from cmrseg.workflows.crossval import cross_validate
from cmrseg.inference import PredictSettings

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = REPO / "runs" / "acc"
# configs/best.json with what a CV fold needs: one thread (folds run side by side), no periodic checkpoints,
# and k-fold splitting instead of training on everything. It trains exactly what ``flip_aug`` trains.
CV_OVERRIDES = {"threads": 1, "checkpoint_every": 1000, "split_mode": "auto"}
# variants score with the plain argmax and flip TTA unless they say otherwise (best.json weights RV by 2 and
# adds zooms 0.9 and 1.1 to the flips since the fourth session)
X2 = {**CV_OVERRIDES, "postprocess.class_weights": None, "tta_scales": [1.0]}
# the first recipe (best.json before input_scale 2), which the older rows of the table measured
V1 = {**X2, "model_info.input_scale": 1}
RV2 = [1.0, 2.0, 1.0, 1.0]
NOISE_OR_BLUR = {"name": "OneOf", "p": 0.3, "transforms": [{"name": "GaussNoise", "std_range": [0.02, 0.06]},
                                                          {"name": "Blur", "blur_limit": [3, 3]}]}
# the recipe's augmentation at about half the strength (the fold models fit their own training slices only to ~0.92)
LIGHT_AUGMENTATION = [
    {"name": "HorizontalFlip", "p": 0.5},
    {"name": "VerticalFlip", "p": 0.5},
    {"name": "Affine", "scale": [0.9, 1.1], "rotate": [-15, 15], "translate_percent": [-0.05, 0.05],
     "border_mode": "BORDER_CONSTANT", "p": 0.5},
    {"name": "RandomBrightnessContrast", "brightness_limit": 0.1, "contrast_limit": 0.1, "p": 0.3},
]
# the recipe's augmentation at about 1.5x the strength (the opposite probe to LIGHT_AUGMENTATION)
STRONG_AUGMENTATION = [
    {"name": "HorizontalFlip", "p": 0.5},
    {"name": "VerticalFlip", "p": 0.5},
    {"name": "Affine", "scale": [0.7, 1.4], "rotate": [-45, 45], "translate_percent": [-0.12, 0.12], "shear": [-12, 12],
     "border_mode": "BORDER_CONSTANT", "p": 0.9},
    {"name": "RandomBrightnessContrast", "brightness_limit": 0.3, "contrast_limit": 0.3, "p": 0.6},
    {"name": "RandomGamma", "gamma_limit": [60, 170], "p": 0.6},
]
SHARED_FOLDS = {"final": "flip_aug", "final+tta": "flip_aug", "final+tta+lcc": "flip_aug", "best": "final_x2",
                "best_flip_tta": "final_x2"}

# name: (config file, overrides, None) to train, or ("", {}, {"of": trained variant, **scoring}) to re-score
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any] | None]] = {
    "base": ("screen_base.json", {}, None),
    "noflip_aug": ("screen_noflip.json", {}, None),
    "noflip_ema": ("screen_noflip.json", {"ema": {"decay": 0.99}}, None),
    "noflip_f32": ("screen_noflip.json", {"model_info.features": 32}, None),
    "noflip_e200": ("screen_noflip.json", {"epochs": 200}, None),
    "base+tta": ("", {}, {"of": "base", "tta": True}),
    "base+lcc": ("", {}, {"of": "base", "postprocess": True}),
    "noflip+tta": ("", {}, {"of": "noflip_aug", "tta": True}),
    "noflip+lcc": ("", {}, {"of": "noflip_aug", "postprocess": True}),
    "flip_aug": ("screen_flip.json", {}, None),
    "flip+tta": ("", {}, {"of": "flip_aug", "tta": True}),
    "flip_dyn8_ds": ("screen_flip.json", {"model_info": {"name": "DynUNet", "depths": 4, "features": 8, "deep_supervision": True}}, None),
    "flip_dyn8_ds+tta": ("", {}, {"of": "flip_dyn8_ds", "tta": True}),
    "flip_dyn8_ds+tta+lcc": ("", {}, {"of": "flip_dyn8_ds", "tta": True, "postprocess": True}),
    "final": (str(REPO / "configs" / "best.json"), {**V1, "tta": False, "postprocess": {"largest_component": False}}, None),
    "final+tta": ("", {}, {"of": "final", "tta": True, "postprocess": False}),
    "final+tta+lcc": ("", {}, {"of": "final", "tta": True, "postprocess": True}),
    "final_timing": (str(REPO / "configs" / "best.json"), V1, None),
    "quick40": (str(REPO / "configs" / "best.json"), {**V1, "epochs": 40}, None),
    "noflip_bs4": ("screen_noflip.json", {"batch_size": 4}, None),
    # best.json's own scoring (flip TTA + largest component) with a 2x wider U-Net
    "final_f32": (str(REPO / "configs" / "best.json"), {**V1, "model_info.features": 32}, None),
    "final_batchdice": (str(REPO / "configs" / "best.json"), {**V1, "criterion_info.batch_dice": True}, None),
    # capacity at the same budget class: the network on 2x up-sampled input, or 3x the epochs
    "final_x2": (str(REPO / "configs" / "best.json"), {**X2, "model_info.input_scale": 2}, None),
    "final_e300": (str(REPO / "configs" / "best.json"), {**V1, "epochs": 300}, None),
    "final_x2_e200": (str(REPO / "configs" / "best.json"), {**X2, "epochs": 200}, None),
    # RV weighted by 2 in the loss (criterion_info.class_weights) instead of, or as well as, at the argmax
    "x2_loss_rv2": (str(REPO / "configs" / "best.json"), {**X2, "criterion_info.class_weights": RV2}, None),
    "x2_loss_rv2+rv2": ("", {}, {"of": "x2_loss_rv2", "class_weights": RV2}),
    "quick50": (str(REPO / "configs" / "best.json"), {**CV_OVERRIDES, "epochs": 50, "tta_scales": [1.0]}, None),
    "final_x2_light": (str(REPO / "configs" / "best.json"),
                       {**X2, "augmentation": LIGHT_AUGMENTATION}, None),
    "final_x3": (str(REPO / "configs" / "best.json"), {**X2, "model_info.input_scale": 3}, None),
    # levers the issue lists, screened on the first recipe (V1; compare with final_timing / flip_aug per fold)
    "v1_cosine": (str(REPO / "configs" / "best.json"), {**V1, "scheduler": {"name": "cosine", "warmup_epochs": 2}}, None),
    "v1_no_warmup": (str(REPO / "configs" / "best.json"), {**V1, "scheduler": {"name": "poly", "warmup_epochs": 0}}, None),
    "v1_noise_blur": (str(REPO / "configs" / "best.json"), {**V1, "augmentation": [*RECIPE_AUGMENTATION, NOISE_OR_BLUR]}, None),
    # RV weighted by 2 before the argmax (postprocess.class_weights), re-scoring trained variants
    "flip+tta+lcc+rv2": ("", {}, {"of": "flip_aug", "tta": True, "postprocess": True, "class_weights": RV2}),
    "final_e300+rv2": ("", {}, {"of": "final_e300", "class_weights": RV2}),
    "final_x2+rv2": ("", {}, {"of": "final_x2", "class_weights": RV2}),
    # configs/best.json as it is; it trains what final_x2 trains, so it scores those fold models
    "best": (str(REPO / "configs" / "best.json"), CV_OVERRIDES, None),
    "best_flip_tta": (str(REPO / "configs" / "best.json"), {**CV_OVERRIDES, "tta_scales": [1.0]}, None),
    "final_dyn16": (str(REPO / "configs" / "best.json"), {**V1, "model_info": {"name": "DynUNet", "features": 16}}, None),
    # third session: normalisation, architecture, depth, augmentation strength and weight averaging on recipe v2,
    # each compared with the recipe's own seeds (final_x2, x2_seed1, x2_seed2) on the same folds
    "x2_instance_norm": (str(REPO / "configs" / "best.json"), {**X2, "model_info.options": {"norm": "instance"}}, None),
    "dyn16_ds": (str(REPO / "configs" / "best.json"),
                 {**X2, "model_info": {"name": "DynUNet", "features": 16, "deep_supervision": True}}, None),
    # recipe v2 again with another initialisation on the same folds: seed noise, and a seed ensemble
    "x2_seed1": (str(REPO / "configs" / "best.json"), {**X2, "seed": 1, "split_seed": 0}, None),
    "x2_seed1+rv2": ("", {}, {"of": "x2_seed1", "class_weights": RV2}),
    "x2_seed2": (str(REPO / "configs" / "best.json"), {**X2, "seed": 2, "split_seed": 0}, None),
    "x2_seed2+rv2": ("", {}, {"of": "x2_seed2", "class_weights": RV2}),
    # one more down-sampling level: a 6x6 bottleneck sees the whole heart (RV context at base and apex)
    "x2_depth5": (str(REPO / "configs" / "best.json"), {**X2, "model_info.depths": 5}, None),
    "x2_strong_aug": (str(REPO / "configs" / "best.json"), {**X2, "augmentation": STRONG_AUGMENTATION}, None),
    "x2_swa": (str(REPO / "configs" / "best.json"), {**X2, "swa": {"start_fraction": 0.75, "lr": 0.001}}, None),
    # fourth session: softer cross-entropy targets, for boundaries the labels themselves place only to a pixel
    "x2_ls01": (str(REPO / "configs" / "best.json"), {**X2, "criterion_info.label_smoothing": 0.1}, None),
    "x2_ls01+rv2": ("", {}, {"of": "x2_ls01", "class_weights": RV2}),
    "x2_ls01_seed1": (str(REPO / "configs" / "best.json"),
                      {**X2, "criterion_info.label_smoothing": 0.1, "seed": 1, "split_seed": 0}, None),
    "x2_ls01_seed1+rv2": ("", {}, {"of": "x2_ls01_seed1", "class_weights": RV2}),
    # learning curve: the recipe on a half / a quarter of each fold's 80 training slices (whole patients, nested),
    # with 2x / 4x the epochs: 1000 optimiser steps like the full recipe (1200 for the quarter: 3 batches of 8 per epoch)
    "x2_train_half": (str(REPO / "configs" / "best.json"), {**X2, "train_fraction": 0.5, "epochs": 200}, None),
    "x2_train_quarter": (str(REPO / "configs" / "best.json"), {**X2, "train_fraction": 0.25, "epochs": 400}, None),
}


def run_variant(name: str, folds: list[int]) -> dict[str, Any]:
    """Cross-validate one variant on ``folds`` and return its pooled row plus wall minutes."""
    _, _, evaluation = VARIANTS[name]
    trained = (evaluation or {}).get("of", name)
    config_name, overrides, _ = VARIANTS[trained]
    settings = PredictSettings(checkpoint="final", **{k: v for k, v in (evaluation or {}).items() if k not in ("of", "class_weights")})
    if evaluation and "class_weights" in evaluation:
        overrides = {**overrides, "postprocess.class_weights": evaluation["class_weights"]}
    config = apply_overrides(load_config(HERE / "configs" / config_name), overrides)
    started = time.perf_counter()
    out_dir = OUT / f"cv_{SHARED_FOLDS.get(name, trained)}"
    result = cross_validate(config, folds=5, out_dir=out_dir, only=folds, progress=False, settings=settings)
    row = {"variant": name, "folds": folds, **result.rows[-1], "wall_minutes": (time.perf_counter() - started) / 60}
    with (OUT / "ablation.jsonl").open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| variant | folds | RV | Myo | LV | mean | HD95 mean (px) | train min/fold |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {','.join(map(str, r['folds']))} | {r['dice_RV']:.3f} | {r['dice_Myo']:.3f} | "
                     f"{r['dice_LV']:.3f} | {r['dice_mean']:.3f} | {r['hd95_mean']:.2f} | {r['train_minutes']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(VARIANTS), help="variants to run (default: all)")
    parser.add_argument("--folds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    rows = [run_variant(name, args.folds) for name in (args.only or VARIANTS)]
    print(markdown(rows))


if __name__ == "__main__":
    main()
