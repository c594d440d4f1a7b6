"""Issue #11: where a recipe's RV end-systolic error comes from (every_slice, or the phase-aware model), and RV factors.

Predicts every held-out volume of ``RUNS/RECIPE`` (the folds that ``benchmarks/acdc_volumes.py`` trains) with the config's
TTA and the last-epoch weights, then, with a plain argmax (no factor, no clean-up):

- per phase and slice position (thirds, base first): slices without a true RV, and how many get one predicted;
- ES slices with a predicted but no true RV: how many hold LV and Myo in the truth, their mean predicted RV area and
  RV probability, against the mean RV probability where the RV is true;
- the predicted-minus-true RV voxels per ES volume, summed over slices without and with a true RV;

and, with the largest 3D component, per-volume Dice and the RV and LV EF bias / SD for RV probability factors, the
volumes with the largest RV voxel error (with their ACDC group) and the mean error per group; for a model that reads
the other phase (phase_pair), the RV error again with each volume handed itself in place of its other phase.

    PYTHONPATH=src .venv/bin/python benchmarks/study/acdc_rv_errors.py [--data ../shared/data/acdc96] [--runs runs/acdc_cv]
        [--recipe every_slice|phase|phase_28|phase_pair]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from cmrseg.config import ExperimentConfig, apply_overrides, load_config
from cmrseg.workflows.crossval import final_checkpoint
from cmrseg.data.readers import Volume
from cmrseg.data.slicing import POSITIONS, slice_positions
from cmrseg.inference import PredictSettings, load_run
from cmrseg.metrics import dice_score
from cmrseg.training.trainer import clone_config
from cmrseg.evaluation.volume_scoring import config_validation_volumes
from cmrseg.inference.volume_prediction import predict_volume_probabilities, volume_mask, volume_probabilities
from cmrseg.commands.common import existing_folder

ROOT = Path(__file__).resolve().parent.parent.parent
FOLDS = 5
RV, MYO, LV = 1, 2, 3
FACTORS = (0.5, 0.7, 1.0, 1.5, 2.0)
RECIPES = {"every_slice": ("acdc.json", {}), "phase": ("acdc_phase.json", {"epochs": 14, "threads": 1}),
           "phase_28": ("acdc_phase.json", {"threads": 2}),
           "phase_pair": ("acdc_phase.json", {"threads": 2, "epochs": 40, "precision": "bfloat16",
                                              "model_info.other_phase": True})}
"""The recipes of ``benchmarks/acdc_volumes.py`` this reads: config file and overrides (phase: its 14-epoch run)."""


def ejection_fraction(ed: int, es: int) -> float:
    return 100.0 * (ed - es) / ed


def held_out_probabilities(config: ExperimentConfig, cv_dir: Path, own_partner: bool = False
                           ) -> tuple[list[Volume], list[np.ndarray]]:
    """Every fold's held-out volumes and their TTA probabilities from that fold's last-epoch weights; with
    ``own_partner`` a model that reads the other phase is handed the volume itself in its place."""
    volumes, probs = [], []
    for fold in range(FOLDS):
        fold_config = clone_config(config, folds=FOLDS, fold=fold)
        settings = PredictSettings(tta=True, tta_scales=tuple(config.tta_scales), checkpoint=final_checkpoint(fold_config))
        predictor, _ = load_run(cv_dir / f"fold_{fold}", settings)
        fold_volumes = config_validation_volumes(fold_config)
        volumes += fold_volumes
        probs += ([volume_probabilities(predictor, volume, partner=volume) for volume in fold_volumes] if own_partner
                  else predict_volume_probabilities(predictor, fold_volumes))
    return volumes, probs


def rv_volume_errors(volumes: list[Volume], probs: list[np.ndarray]) -> list[tuple[int, Volume]]:
    """Predicted minus true RV voxels of each volume (largest 3D component, no factor), largest error first."""
    errors = [(int((volume_mask(p, True, None) == RV).sum()) - int((v.label == RV).sum()), v)
              for v, p in zip(volumes, probs, strict=True)]
    return sorted(errors, key=lambda item: -abs(item[0]))


def worst_volumes_table(errors: list[tuple[int, Volume]], count: int = 10) -> None:
    print(f"\n| worst RV volumes (of {len(errors)}) | group | phase | true RV voxels | predicted - true |\n|---|---|---|---|---|")
    for error, volume in errors[:count]:
        print(f"| {volume.case} | {volume.group} | {volume.phase} | {int((volume.label == RV).sum())} | {error:+d} |")
    groups = sorted({volume.group for _, volume in errors})
    print("\nmean |predicted - true| RV voxels by group: " + ", ".join(
        f"{g} {np.mean([abs(e) for e, v in errors if v.group == g]):.0f}" for g in groups))


def slice_table(items: list[tuple]) -> None:
    print("| phase | position | slices | without true RV | of those with RV predicted |\n|---|---|---|---|---|")
    for phase in ("ED", "ES"):
        for position in POSITIONS:
            rows = [(t, p) for ph, pos, t, p in items if ph == phase and pos == position]
            empty = [p for t, p in rows if t == 0]
            print(f"| {phase} | {position} | {len(rows)} | {len(empty)} | {sum(p > 0 for p in empty)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=existing_folder, default="../shared/data/acdc96")
    parser.add_argument("--runs", default="runs/acdc_cv")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="every_slice",
                        help="every_slice (configs/acdc.json), phase (configs/acdc_phase.json for 14 epochs), phase_28 "
                             "(configs/acdc_phase.json) or phase_pair (40 bfloat16 epochs reading the other phase), "
                             "trained by acdc_volumes.py")
    args = parser.parse_args()
    torch.set_num_threads(2)
    config_file, overrides = RECIPES[args.recipe]
    config = apply_overrides(load_config(ROOT / "configs" / config_file),
                             {**overrides, "dataset_info.train_data_path": str(args.data)})
    volumes, probs = held_out_probabilities(config, Path(args.runs) / args.recipe)

    items, wrong, true_confidence = [], [], []
    es_error = {"without": [], "with": []}
    for volume, p in zip(volumes, probs, strict=True):
        truth, pred = volume.label, volume_mask(p, False, None)
        true_area, pred_area = (truth == RV).sum((0, 1)), (pred == RV).sum((0, 1))
        for z, position in enumerate(slice_positions(volume.n_slices)):
            items.append((volume.phase, position, true_area[z], pred_area[z]))
            rv_pixels = pred[:, :, z] == RV
            if true_area[z] > 0 and pred_area[z] > 0:
                true_confidence.append(p[RV][:, :, z][rv_pixels].mean())
            if volume.phase == "ES" and true_area[z] == 0 and pred_area[z] > 0:
                holds = bool((truth[:, :, z] == LV).any() and (truth[:, :, z] == MYO).any())
                wrong.append((holds, pred_area[z], p[RV][:, :, z][rv_pixels].mean()))
        if volume.phase == "ES":
            error = pred_area.astype(int) - true_area.astype(int)
            es_error["without"].append(error[true_area == 0].sum())
            es_error["with"].append(error[true_area > 0].sum())
    slice_table(items)
    print(f"\nES slices with RV predicted but none true: {len(wrong)}; holding LV and Myo in the truth: "
          f"{sum(h for h, _, _ in wrong)}; mean predicted RV area {np.mean([a for _, a, _ in wrong]):.0f} pixels, "
          f"mean RV probability {np.mean([c for _, _, c in wrong]):.2f} (where the RV is true: {np.mean(true_confidence):.2f})")
    print(f"predicted - true RV voxels per ES volume: {np.mean(es_error['without']):+.0f} on slices without a true RV, "
          f"{np.mean(es_error['with']):+.0f} on slices with one\n")

    print("| RV factor | Dice RV | Myo | LV | mean | RV EF bias / SD | LV EF bias / SD |\n|---|---|---|---|---|---|---|")
    for factor in FACTORS:
        weights = [1.0, factor, 1.0, 1.0]
        dice, counts = [], {}
        for volume, p in zip(volumes, probs, strict=True):
            mask = volume_mask(p, True, weights)
            dice.append([dice_score(mask, volume.label, label) for label in (RV, MYO, LV)])
            counts.setdefault(volume.patient, {})[volume.phase] = [(m == label).sum() for m in (mask, volume.label)
                                                                   for label in (RV, LV)]
        rv = [ejection_fraction(c["ED"][0], c["ES"][0]) - ejection_fraction(c["ED"][2], c["ES"][2]) for c in counts.values()]
        lv = [ejection_fraction(c["ED"][1], c["ES"][1]) - ejection_fraction(c["ED"][3], c["ES"][3]) for c in counts.values()]
        means = np.mean(dice, axis=0)
        print(f"| x{factor} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {means.mean():.3f} | "
              f"{np.mean(rv):+.1f} / {np.std(rv, ddof=1):.1f} | {np.mean(lv):+.2f} / {np.std(lv, ddof=1):.2f} |")
    errors = rv_volume_errors(volumes, probs)
    worst_volumes_table(errors)
    if config.model_info.other_phase:
        own = [error for error, _ in rv_volume_errors(*held_out_probabilities(config, Path(args.runs) / args.recipe, True))]
        paired = [error for error, _ in errors]
        print(f"predicted - true RV voxels per volume, mean / SD: {np.mean(paired):+.0f} / {np.std(paired, ddof=1):.0f} "
              f"with the other phase, {np.mean(own):+.0f} / {np.std(own, ddof=1):.0f} with the volume itself in its place")


if __name__ == "__main__":
    main()
