"""Issue #11: the every-slice recipe against the slice-only recipe on acdc96, patient-wise 5-fold CV, per volume.

    python benchmarks/acdc_volumes.py [--data ../shared/data/acdc96] [--runs runs/acdc_cv] [--skip-train] [--recipes R ...] [--merge]

1. Trains (or resumes, or skips when finished) ``cmrseg cv`` of ``configs/acdc.json`` on every slice of the
   volumes (RUNS/every_slice), of ``configs/acdc_25d.json`` on every slice with its two neighbours (2.5-D,
   RUNS/context), of ``configs/acdc.json`` drawing base and apex slices twice as often (RUNS/edge_sampling), of
   ``configs/acdc_phase.json`` for 14 epochs on every slice with its cardiac phase as an input plane (RUNS/phase), of
   the same with the slice position as a second plane (RUNS/phase_position), of ``configs/acdc_phase.json`` as it is
   (28 epochs, one fold at a time on both cores; RUNS/phase_28) and of that drawing base and apex slices twice as often
   (RUNS/phase_28_edges), of phase_28 in bfloat16 for 40 epochs in the same budget (RUNS/phase_bf16), of that
   reading the same slice of the patient's other phase as a second channel (RUNS/phase_pair), and of
   ``configs/best.json`` on the kept coursework slice of each volume only (RUNS/slice_only; those PNGs are named by
   case, so the folds hold the same patients).
2. Predicts every held-out volume with its fold's final weights, with and without the config's TTA.
3. Writes ``benchmarks/results/acdc_volumes.json`` and ``.md`` (per-volume Dice / HD95 for all, ED and ES volumes,
   clinical-index agreement, Dice of the 100 kept coursework slices, time per volume) and the EF agreement plots
   ``acdc_agreement_scatter.png`` / ``acdc_agreement_bland_altman.png``, with the commit and machine they came from.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cmrseg.metrics.clinical import plot_agreement
from cmrseg.config import ExperimentConfig, apply_overrides, load_config
from cmrseg.constants import STRUCTURES
from cmrseg.workflows.crossval import cross_validate, final_checkpoint
from cmrseg.data.dataset import prepare_data
from cmrseg.data.readers import Volume, list_cases, load_volume
from cmrseg.data.slicing import phase_partners
from cmrseg.inference import PredictSettings, load_run
from cmrseg.metrics import aggregate, image_metrics
from cmrseg.training.trainer import clone_config
from cmrseg.commands.common import existing_folder
from cmrseg.utils import run_metadata
from cmrseg.evaluation.volume_scoring import score_volume_masks
from cmrseg.inference.volume_prediction import predict_volume_probabilities, volume_mask, volume_probabilities

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FOLDS = 5
RECIPES = ("every_slice", "context", "edge_sampling", "phase", "phase_position", "phase_28", "phase_28_edges",
           "phase_bf16", "phase_pair", "slice_only")
EDGE_SAMPLING = {"base": 2.0, "mid": 1.0, "apex": 2.0}
"""``slice_sampling`` of the edge_sampling recipe: configs/acdc.json drawing base and apex slices twice as often."""
SHORT_PHASE = {"epochs": 14, "threads": 1}
"""The phase recipe: configs/acdc_phase.json as it was until phase_28 replaced it (14 epochs on one thread, two folds
side by side, about 12 minutes a fold)."""
LONG_PHASE = {"epochs": 28, "threads": 2}
"""The phase_28 recipe, configs/acdc_phase.json now: twice the epochs, one fold at a time on both cores, so that a fold
takes most of the 15-minute budget."""
BFLOAT16_PHASE = {"epochs": 40, "precision": "bfloat16"}
"""The phase_bf16 recipe: phase_28 trained under bfloat16 autocast, whose 1.55x faster epoch (17.3 against 26.9 s,
benchmarks/results/epoch_speed_acdc_phase.json) buys 40 epochs in the same 15 minutes a fold."""
OTHER_PHASE = {"model_info.other_phase": True}
"""The phase_pair recipe: phase_bf16 reading the same slice of the patient's other phase (ED <-> ES) as a second image
channel, so the end-systolic right ventricle is drawn knowing where it lay at end-diastole, and the reverse."""
PIPELINES = {"every_slice": "", "context": "_context", "phase": "_phase", "phase_position": "_phase_position",
             "phase_28": "_phase_28", "phase_28_edges": "_phase_28_edges", "phase_bf16": "_phase_bf16",
             "phase_pair": "_phase_pair"}
"""Recipes whose full pipeline gets agreement and slice-position tables and EF plots (file name suffix)."""
REPORTED_INDICES = ("LV_EF_pct", "RV_EF_pct", "LV_EDV_voxels", "LV_ESV_voxels", "RV_EDV_voxels", "RV_ESV_voxels",
                    "Myo_ED_voxels")


def write_kept_slices(data: Path, out: Path) -> Path:
    """The coursework slice of every volume (Info.cfg ``CourseworkSliceED/ES``) as ``image/CASE.png`` + mask."""
    if (out / "image").is_dir():
        return out
    (out / "image").mkdir(parents=True)
    (out / "mask").mkdir()
    for case in list_cases(data):
        volume = load_volume(case)
        z = int(case.info[f"CourseworkSlice{case.phase}"])
        Image.fromarray(volume.image[:, :, z]).save(out / "image" / f"{case.case}.png")
        Image.fromarray(volume.label[:, :, z]).save(out / "mask" / f"{case.case}_mask.png")
    return out


def recipes(data: Path, runs: Path) -> dict[str, tuple[ExperimentConfig, Path]]:
    path = {"dataset_info.train_data_path": str(data)}
    every = apply_overrides(load_config(ROOT / "configs" / "acdc.json"), path)
    context = apply_overrides(load_config(ROOT / "configs" / "acdc_25d.json"), path)
    kept = write_kept_slices(data, runs.parent / "acdc_kept_slices")
    slices = apply_overrides(load_config(ROOT / "configs" / "best.json"), {"dataset_info.train_data_path": str(kept)})
    edges = apply_overrides(every, {"slice_sampling": EDGE_SAMPLING})
    phase = apply_overrides(load_config(ROOT / "configs" / "acdc_phase.json"), {**path, **SHORT_PHASE})
    phase_position = apply_overrides(phase, {"model_info.conditions": ["phase", "position"]})
    phase_long = apply_overrides(phase, LONG_PHASE)
    phase_long_edges = apply_overrides(phase_long, {"slice_sampling": EDGE_SAMPLING})
    phase_bf16 = apply_overrides(phase_long, BFLOAT16_PHASE)
    return {"every_slice": (every, runs / "every_slice"), "context": (context, runs / "context"),
            "edge_sampling": (edges, runs / "edge_sampling"), "phase": (phase, runs / "phase"),
            "phase_position": (phase_position, runs / "phase_position"),
            "phase_28": (phase_long, runs / "phase_28"),
            "phase_28_edges": (phase_long_edges, runs / "phase_28_edges"),
            "phase_bf16": (phase_bf16, runs / "phase_bf16"),
            "phase_pair": (apply_overrides(phase_bf16, OTHER_PHASE), runs / "phase_pair"),
            "slice_only": (slices, runs / "slice_only")}


def held_out_patients(config: ExperimentConfig, fold: int) -> set[str]:
    val = prepare_data(clone_config(config, folds=FOLDS, fold=fold)).val
    return {s.group or s.id.split("_frame")[0] for s in val}


def fold_settings(config: ExperimentConfig, fold: int, tta: bool, precision: str = "float32") -> PredictSettings:
    """The fold's last-epoch weights, with the config's TTA (flips at its zooms) or none, in ``precision``."""
    return PredictSettings(tta=tta, tta_scales=tuple(config.tta_scales) if tta else None, precision=precision,
                           checkpoint=final_checkpoint(clone_config(config, folds=FOLDS, fold=fold)))


def predict_fold(config: ExperimentConfig, cv_dir: Path, fold: int, volumes: list[Volume], tta: bool,
                 precision: str = "float32") -> list[np.ndarray]:
    run_dir = cv_dir / f"fold_{fold}"
    predictor, _ = load_run(run_dir, fold_settings(config, fold, tta, precision))
    return predict_volume_probabilities(predictor, volumes)


def seconds_per_volume(config: ExperimentConfig, cv_dir: Path, volume: Volume, partner: Volume, tta: bool,
                       repeats: int = 5) -> float:
    """Best-of-``repeats`` wall time to predict and post-process one volume (after a warm-up call); ``partner``, its
    other phase, is read by a model with ``other_phase`` only."""
    run_dir = cv_dir / "fold_0"
    predictor, _ = load_run(run_dir, fold_settings(config, 0, tta))
    weights = config.postprocess.class_weights
    volume_mask(volume_probabilities(predictor, volume, partner=partner), True, weights)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        volume_mask(volume_probabilities(predictor, volume, partner=partner), True, weights)
        best = min(best, time.perf_counter() - started)
    return best


def kept_slice_scores(volumes: list[Volume], masks: list[np.ndarray]) -> dict[str, Any]:
    """Per-image 2D Dice (cmr96 convention) of each volume's coursework slice, taken from the volume prediction."""
    rows = []
    for volume, mask in zip(volumes, masks, strict=True):
        z = int(volume.info[f"CourseworkSlice{volume.phase}"])
        rows.append({"id": volume.case, **image_metrics(mask[:, :, z], volume.label[:, :, z])})
    return aggregate(rows)


RV_X2 = [1.0, 2.0, 1.0, 1.0]
"""The RV factor that ``configs/acdc.json`` (from #5) applies before the argmax."""
WITH_FACTOR = "TTA + RV x2 + largest 3D component"
WITHOUT_FACTOR = "TTA + largest 3D component, no RV factor"


def pipeline_label(config: ExperimentConfig) -> str:
    """The variant that is what ``cmrseg predict`` does with ``config`` (its TTA, clean-up and class weights)."""
    return WITH_FACTOR if config.postprocess.class_weights == RV_X2 else WITHOUT_FACTOR


def variants(probs_tta: list[np.ndarray], probs_plain: list[np.ndarray],
             probs_bf16: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Label volumes of the pipelines and of the ablations of their parts (and in bfloat16, if predicted)."""
    masks = {
        WITH_FACTOR: [volume_mask(p, True, RV_X2) for p in probs_tta],
        "TTA + RV x2, no clean-up": [volume_mask(p, False, RV_X2) for p in probs_tta],
        "TTA, plain argmax": [volume_mask(p, False, None) for p in probs_tta],
        WITHOUT_FACTOR: [volume_mask(p, True, None) for p in probs_tta],
        "no TTA + RV x2 + largest 3D component": [volume_mask(p, True, RV_X2) for p in probs_plain],
    }
    if probs_bf16:
        masks[f"{WITH_FACTOR}, bfloat16"] = [volume_mask(p, True, RV_X2) for p in probs_bf16]
    return masks


def summarise(scored: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    agreement = {k: v for k, v in scored["agreement"].items() if k in REPORTED_INDICES}
    return {"volumes": scored["volumes"], "positions": scored["positions"], "agreement": agreement,
            "kept_slices": {"dice": kept["dice"], "hd95": kept["hd95"], "n_images": kept["n_images"]}}


def evaluate_recipe(name: str, config: ExperimentConfig, cv_dir: Path, data: Path, folds_of: dict[int, set[str]]
                    ) -> tuple[dict[str, Any], tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    all_cases = list_cases(data)
    volumes: list[Volume] = []
    probs_tta: list[np.ndarray] = []
    probs_plain: list[np.ndarray] = []
    probs_bf16: list[np.ndarray] = []
    for fold, patients in folds_of.items():
        fold_volumes = [load_volume(c) for c in all_cases if c.patient in patients]
        volumes += fold_volumes
        probs_tta += predict_fold(config, cv_dir, fold, fold_volumes, tta=True)
        probs_plain += predict_fold(config, cv_dir, fold, fold_volumes, tta=False)
        if name == "every_slice":
            probs_bf16 += predict_fold(config, cv_dir, fold, fold_volumes, tta=True, precision="bfloat16")
        print(f"{name}: fold {fold} predicted ({len(fold_volumes)} volumes)", file=sys.stderr)
    results: dict[str, Any] = {"pipeline": pipeline_label(config)}
    pipeline_indices: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for label, masks in variants(probs_tta, probs_plain, probs_bf16).items():
        scored = score_volume_masks(volumes, masks)
        results[label] = summarise(scored, kept_slice_scores(volumes, masks))
        if label == results["pipeline"]:
            pipeline_indices = (scored["indices"], scored["true_indices"])
    history_seconds = [sum(float(r.split(",")[-1]) for r in (cv_dir / f"fold_{k}" / "history.csv").read_text().splitlines()[1:])
                       for k in folds_of]
    results["train_minutes_per_fold"] = [round(s / 60, 2) for s in history_seconds]
    return results, pipeline_indices


def _row(label: str, entry: dict[str, Any]) -> str:
    dice = entry["volumes"]["all"]["dice"]
    ed, es = entry["volumes"]["ED"]["dice"]["mean"], entry["volumes"]["ES"]["dice"]["mean"]
    hd = entry["volumes"]["all"]["hd95"]["mean"]
    agree = entry["agreement"]
    lv, rv = agree["LV_EF_pct"], agree["RV_EF_pct"]
    kept = entry["kept_slices"]["dice"]["mean"]
    cells = [label, *(f"{dice[s]:.3f}" for s in (*STRUCTURES, "mean")), f"{ed:.3f}", f"{es:.3f}", f"{hd:.2f}",
             f"{lv['bias']:+.2f} / {lv['sd']:.2f} / {lv['r']:.3f}", f"{rv['bias']:+.2f} / {rv['sd']:.2f} / {rv['r']:.3f}",
             f"{kept:.3f}"]
    return "| " + " | ".join(cells) + " |"


def _pipeline_tables(name: str, pipeline: dict[str, Any]) -> list[str]:
    lines = ["", f"Agreement of the {name} pipeline's indices with the true masks' (voxels; spacing unknown):", "",
             "| index | n | bias | SD | MAE | r |", "|---|---|---|---|---|---|"]
    for index, s in pipeline["agreement"].items():
        lines.append(f"| {index} | {s['n']} | {s['bias']:+.2f} | {s['sd']:.2f} | {s['mae']:.2f} | {s['r']:.3f} |")
    lines += ["", f"Slice Dice by position ({name} pipeline):", "", "| position | slices | RV | Myo | LV | mean |",
              "|---|---|---|---|---|---|"]
    for position, entry in pipeline["positions"].items():
        lines.append(f"| {position} | {entry['n_slices']} | " + " | ".join(f"{entry['dice'][s]:.3f}" for s in
                                                                           (*STRUCTURES, "mean")) + " |")
    return lines


def here(report: dict[str, Any]) -> str:
    """Where the report's own run measured: commit and date, as each evaluated recipe records them."""
    return f"commit {report['commit']}, {report['date']}"


def earlier_report(path: Path, chosen: set[str]) -> dict[str, Any]:
    """The recipes and speeds of an earlier full report that this run does not evaluate, each marked with where it
    was measured (``--merge``), so one results table can grow a recipe at a time."""
    if not path.is_file():
        return {}
    try:
        earlier = json.loads(path.read_text())
        here(earlier)
    except (ValueError, KeyError, TypeError) as err:
        print(f"{path}: not a results file of this script ({type(err).__name__}: {err}); "
              "move it away or run without --merge", file=sys.stderr)
        raise SystemExit(2) from None
    kept: dict[str, Any] = {name: {**earlier[name], "measured": earlier[name].get("measured", here(earlier))}
                            for name in RECIPES if name in earlier and name not in chosen}
    kept["seconds_per_volume"] = {name: speed for name, speed in earlier.get("seconds_per_volume", {}).items()
                                  if name not in chosen}
    return kept


def markdown(report: dict[str, Any]) -> str:
    present = [recipe for recipe in RECIPES if recipe in report]
    elsewhere = [f"{recipe} ({report[recipe]['measured']})" for recipe in present
                 if report[recipe].get("measured", here(report)) != here(report)]
    lines = [f"acdc96, 5-fold CV by patient (seed 0), 100 volumes; commit {report['commit']}, {report['machine']}, "
             f"{report['date']}" + (f"; kept from earlier runs: {', '.join(elsewhere)}" if elsewhere else ""), "",
             "| recipe / prediction | Dice RV | Myo | LV | mean | ED mean | ES mean | HD95 vox | LV EF bias / SD / r "
             "| RV EF bias / SD / r | kept-slice Dice |",
             "|" + "---|" * 11]
    for recipe in present:
        for label, entry in report[recipe].items():
            if isinstance(entry, dict):
                own = " (the config's)" if label == report[recipe].get("pipeline", WITH_FACTOR) else ""
                lines.append(_row(f"{recipe}: {label}{own}", entry))
    for name in PIPELINES:
        if name in report:
            label = report[name].get("pipeline", WITH_FACTOR)
            lines += _pipeline_tables(f"{name} ({label})", report[name][label])
    minutes = "; ".join(f"{recipe} {report[recipe]['train_minutes_per_fold']}" for recipe in present)
    lines += ["", f"Training minutes per fold (wall time from each fold's history.csv, on as many threads as the config's "
              f"`threads`, beside whatever else ran): {minutes}."]
    for name, speed in report["seconds_per_volume"].items():
        lines.append(f"One {speed['slices']}-slice volume, {name} model, predicted and post-processed on {speed['threads']} "
                     f"threads: {speed['no_tta']:.3f} s without TTA, {speed['tta']:.2f} s with the recipe's TTA.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=existing_folder, default=str(ROOT.parent / "shared" / "data" / "acdc96"))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "acdc_cv"))
    parser.add_argument("--skip-train", action="store_true", help="only evaluate folds that are already trained")
    parser.add_argument("--folds", type=int, nargs="+", default=list(range(FOLDS)),
                        help="evaluate only these folds (a quick check; the report needs all five)")
    parser.add_argument("--reuse", action="store_true",
                        help="take a recipe's scores from RUNS/<recipe>/volume_eval.json when an earlier run left them")
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES),
                        help="train and evaluate only these recipes")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other recipes of the existing results file (marked with where they were measured) "
                             "instead of writing a report of these recipes only")
    args = parser.parse_args()
    data, runs = Path(args.data), Path(args.runs)
    every_recipe = recipes(data, runs)
    chosen = {name: every_recipe[name] for name in args.recipes}
    partial = len(args.folds) < FOLDS
    suffix = "_partial_" + "_".join([*args.recipes, *map(str, args.folds)]) if partial else ""
    results_json = RESULTS / f"acdc_volumes{suffix}.json"
    earlier = earlier_report(results_json, set(chosen)) if args.merge else {}
    if not args.skip_train:
        for config, cv_dir in chosen.values():
            cross_validate(config, FOLDS, cv_dir, progress=False)
    every_config = every_recipe["every_slice"][0]
    folds_of = {k: held_out_patients(every_config, k) for k in args.folds}
    for config, _ in every_recipe.values():
        assert folds_of == {k: held_out_patients(config, k) for k in args.folds}, "folds must match"
    torch.set_num_threads(2)
    report: dict[str, Any] = {**run_metadata(ROOT), **earlier}
    for name, (config, cv_dir) in chosen.items():
        cached = cv_dir / f"volume_eval{suffix}.json"
        if args.reuse and cached.is_file():
            report[name] = json.loads(cached.read_text())
            continue
        report[name], indices = evaluate_recipe(name, config, cv_dir, data, folds_of)
        report[name]["measured"] = here(report)
        cached.write_text(json.dumps(report[name], default=float))
        if name in PIPELINES:
            plot_agreement(*indices, RESULTS / f"acdc_agreement_scatter{PIPELINES[name]}{suffix}.png",
                           RESULTS / f"acdc_agreement_bland_altman{PIPELINES[name]}{suffix}.png")
    every_volume = [load_volume(case) for case in list_cases(data)]
    ten = next(volume for volume in every_volume if volume.n_slices == 10)
    partner = phase_partners(every_volume, lambda volume: volume.path)[ten.case]
    report["seconds_per_volume"] = {**report.get("seconds_per_volume", {}), **{
        name: {"slices": ten.n_slices, "threads": 2,
               "no_tta": seconds_per_volume(every_recipe[name][0], every_recipe[name][1], ten, partner, tta=False),
               "tta": seconds_per_volume(every_recipe[name][0], every_recipe[name][1], ten, partner, tta=True)}
        for name in PIPELINES if name in chosen}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    results_json.write_text(json.dumps(report, indent=1, default=float) + "\n")
    (RESULTS / f"acdc_volumes{suffix}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
