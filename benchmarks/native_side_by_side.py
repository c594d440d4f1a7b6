"""Issue #25, side by side on the same folds: the acdc96-trained recipe applied to acdc_native (what a user gets
today) against the native recipe, on the same held-out native volumes.

    python benchmarks/native_side_by_side.py [--acdc96 ../shared/data/acdc96] [--native ../shared/data/acdc_native]
        [--runs runs/side_acdc96] [--native-cv runs/native_cv] [--only K ...] [--skip-train] [--tta]

1. Trains (resumes, or skips when finished) ``cmrseg cv --config configs/acdc.json --data ACDC96 --folds 5 --out
   RUNS`` through :func:`cmrseg.workflows.crossval.cross_validate` (``--only``: just those folds; ``--skip-train``:
   none, the folds already finished are reported). That also scores each fold on its acdc96 crops.
2. Checks that every fold holds out the same patients in that cv, in ``configs/acdc_native.json``'s cv on
   acdc_native and (``--native-cv``) in each ``fold_K/config.json`` of the native recipe's cv folder.
3. Predicts each finished fold's held-out patients' **native** volumes with the fold's final weights as
   ``cmrseg predict --run RUNS/fold_K`` does (:func:`cmrseg.evaluation.volume_scoring.held_out_with_qc`, the path
   ``cmrseg cv`` scores with: the run's clean-up and class weights; a model trained without spacing predicts each
   slice on its own grid), without TTA and, with ``--tta``, with the recipe's TTA (flips at its zooms); scores each
   volume at native resolution (:func:`cmrseg.evaluation.volume_scoring.score_volume_masks`). Each fold's scores are
   kept in ``RUNS/native/fold_K_<prediction>.json`` and reused by later calls.
4. The native recipe's numbers are the per-volume rows and indices of its cv (``NATIVE_CV/cv_volumes.json``, by
   default the committed ``benchmarks/results/native_cv/cv_volumes.json``), taken for the same patients.
5. Writes ``benchmarks/results/native_side_by_side.json`` and ``.md``: per fold and pooled over the folds done,
   per-volume Dice (all, ED, ES; RV / Myo / LV), HD95, volumes below 0.80, and the clinical indices' agreement.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from cmrseg import runs as run_files
from cmrseg.commands.common import existing_folder
from cmrseg.config import ExperimentConfig, apply_overrides, load_config
from cmrseg.constants import STRUCTURES
from cmrseg.data.dataset import prepare_data
from cmrseg.errors import CmrsegError
from cmrseg.evaluation.volume_scoring import held_out_with_qc, score_volume_masks
from cmrseg.inference import PredictSettings
from cmrseg.io.atomic import write_json_atomic, write_text_atomic
from cmrseg.metrics.clinical import agreement
from cmrseg.metrics.volumes import summarize_volumes
from cmrseg.qc.assess import BAD_DICE, qc_against_truth
from cmrseg.training.trainer import clone_config
from cmrseg.utils import run_metadata
from cmrseg.workflows.crossval import CV_SETTINGS, cross_validate, final_checkpoint, fold_dir

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FOLDS = 5
NATIVE = "native recipe"
"""The side whose numbers come from the native recipe's cv (configs/acdc_native.json)."""
PREDICTIONS = {"acdc96 recipe, no TTA": "plain", "acdc96 recipe, TTA": "tta"}
"""The acdc96 recipe's predictions of the native volumes and the file name each fold's scores are kept under."""
INDICES = ("LV_EF_pct", "RV_EF_pct", "LV_EDV_ml", "LV_ESV_ml", "RV_EDV_ml", "LV_mass_g")


def recipe_configs(acdc96: Path, native: Path) -> tuple[ExperimentConfig, ExperimentConfig]:
    """configs/acdc.json on ``acdc96`` (as ``cmrseg cv --data`` gives it) and configs/acdc_native.json on ``native``."""
    def on(name: str, data: Path) -> ExperimentConfig:
        return apply_overrides(load_config(ROOT / "configs" / name), {"dataset_info.train_data_path": str(data.resolve())})

    return on("acdc.json", acdc96), on("acdc_native.json", native)


def held_out_patients(config: ExperimentConfig, fold: int) -> list[str]:
    """The patients fold ``fold`` of ``config``'s patient-wise cv holds out (cmrseg's own split)."""
    return sorted({sample.group or sample.id for sample in prepare_data(clone_config(config, folds=FOLDS, fold=fold)).val})


def check_same_folds(acdc96: ExperimentConfig, native: ExperimentConfig, native_cv: Path | None) -> dict[int, list[str]]:
    """Each fold's held-out patients, refused unless the acdc96 cv, the native cv and (when given) the native cv
    folder's own fold configs hold out the same ones."""
    folds = {}
    for k in range(FOLDS):
        patients = held_out_patients(acdc96, k)
        others = {"configs/acdc_native.json": held_out_patients(native, k)}
        if native_cv is not None:
            saved = run_files.read_run_config(fold_dir(native_cv, k))
            others[str(fold_dir(native_cv, k))] = held_out_patients(
                apply_overrides(saved, {"dataset_info.train_data_path": native.dataset_info.train_data_path}), k)
        for where, theirs in others.items():
            if theirs != patients:
                raise CmrsegError(f"fold {k}: {where} holds out {theirs}, the acdc96 cv {patients}")
        folds[k] = patients
    return folds


def finished_folds(runs: Path, config: ExperimentConfig) -> list[int]:
    """The folds of the acdc96 cv in ``runs`` whose training is finished."""
    return [k for k in range(FOLDS) if (fold_dir(runs, k) / run_files.CONFIG_FILE).is_file()
            and run_files.run_state(fold_dir(runs, k), config.epochs) == "finished"]


def read_scores(path: Path) -> dict[str, Any]:
    """Scores written as JSON, whose undefined indices (NaN: mL without a spacing) were written as null."""
    scores = json.loads(path.read_text())
    for key in ("indices", "true_indices"):
        scores[key] = [{name: math.nan if value is None else value for name, value in row.items()} for row in scores[key]]
    return scores


def fold_scores(runs: Path, acdc96: ExperimentConfig, native: ExperimentConfig, fold: int, tta: bool) -> dict[str, Any]:
    """The native held-out volumes of ``fold`` predicted by the acdc96 fold model (its final weights, with or without
    its TTA) and scored per volume, with the seconds it took; computed once, then read from RUNS/native."""
    cache = runs / "native" / f"fold_{fold}_{'tta' if tta else 'plain'}.json"
    if cache.is_file():
        return read_scores(cache)
    settings = replace(CV_SETTINGS, tta=tta, checkpoint=final_checkpoint(acdc96))
    started = time.perf_counter()
    volumes, masks, checked = held_out_with_qc(fold_dir(runs, fold), clone_config(native, folds=FOLDS, fold=fold), settings)
    seconds = time.perf_counter() - started
    scored = score_volume_masks(volumes, masks, checked)
    result = {"fold": fold, "tta": tta, "seconds": seconds, "qc_threshold": checked.threshold,
              **{key: scored[key] for key in ("per_volume", "indices", "true_indices")}}
    write_json_atomic(cache, result)
    print(f"fold {fold}, {'TTA' if tta else 'no TTA'}: {len(volumes)} native volumes predicted in {seconds:.0f} s",
          file=sys.stderr)
    return result


def summary(rows: list[dict[str, Any]], indices: list[dict[str, Any]], true_indices: list[dict[str, Any]]
            ) -> dict[str, Any]:
    """Per-volume Dice / HD95 (all, ED, ES) and the indices' agreement of the scored ``rows`` (cmrseg's summaries)."""
    volumes = summarize_volumes(rows)["volumes"]
    stats = agreement(indices, true_indices)
    return {"n_volumes": len(rows), "volumes": {name: volumes[name] for name in ("all", "ED", "ES")},
            "below_0.80": sum(row["dice"]["mean"] < BAD_DICE for row in rows),
            "agreement": {index: stats[index] for index in INDICES if index in stats}}


def of_patients(scored: dict[str, Any], patients: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The per-volume rows and index rows of ``scored`` that belong to ``patients``."""
    wanted = set(patients)
    return {key: [row for row in scored[key] if row["patient"] in wanted]
            for key in ("per_volume", "indices", "true_indices")}


def side_by_side(sides: dict[str, dict[int, dict[str, Any]]], folds: dict[int, list[str]]) -> dict[str, Any]:
    """Every side's summary per fold and pooled over ``folds``, on the same patients."""
    report: dict[str, Any] = {"folds": {}, "pooled": {}}
    for name, by_fold in sides.items():
        parts = [of_patients(by_fold[k], patients) for k, patients in folds.items()]
        for k, part in zip(folds, parts, strict=True):
            report["folds"].setdefault(str(k), {})[name] = summary(part["per_volume"], part["indices"], part["true_indices"])
        pooled = {key: [row for part in parts for row in part[key]] for key in ("per_volume", "indices", "true_indices")}
        report["pooled"][name] = summary(pooled["per_volume"], pooled["indices"], pooled["true_indices"])
        predicted_here = [by_fold[k] for k in folds if "seconds" in by_fold[k]]
        if len(predicted_here) == len(folds):  # predicted by this script: its time and quality control
            report["pooled"][name]["seconds_per_volume"] = (sum(fold["seconds"] for fold in predicted_here)
                                                            / len(pooled["per_volume"]))
            report["pooled"][name]["qc"] = qc_against_truth(pooled["per_volume"], predicted_here[0]["qc_threshold"])
    return report


def crop_scores(runs: Path, folds: dict[int, list[str]]) -> dict[str, Any] | None:
    """The acdc96 recipe on the acdc96 crops of the same patients (its cv's own volume scores, with its TTA), if
    the cv in ``runs`` last scored every reported fold."""
    path = runs / "cv_volumes.json"
    if not path.is_file():
        return None
    patients = [p for fold in folds.values() for p in fold]
    part = of_patients(read_scores(path), patients)
    if {row["patient"] for row in part["per_volume"]} != set(patients):
        return None
    return summary(part["per_volume"], part["indices"], part["true_indices"])


def _dice(entry: dict[str, Any], group: str = "all") -> str:
    return f"{entry['volumes'][group]['dice']['mean']:.3f}"


def _structures(entry: dict[str, Any], group: str = "all") -> str:
    return " / ".join(f"{entry['volumes'][group]['dice'][s]:.3f}" for s in STRUCTURES)


def _agreement(entry: dict[str, Any], index: str) -> str:
    s = entry["agreement"].get(index)
    return "n/a" if s is None else f"{s['bias']:+.2f} / {s['sd']:.2f} / {s['r']:.3f}"


def markdown(report: dict[str, Any]) -> str:
    """The pooled table (one column per side), the per-fold table and where it was measured."""
    pooled = report["pooled"]
    names = list(pooled)
    folds = ", ".join(report["held_out"])
    lines = [f"acdc_native, the held-out patients of folds {folds} of `cmrseg cv --config configs/acdc_native.json "
             f"--folds 5` ({pooled[NATIVE]['n_volumes']} volumes), each side's fold model, per volume at native "
             f"resolution; commit {report['measured']['commit']}, {report['measured']['date']}, "
             f"{report['measured']['machine']}.", "",
             "| pooled | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]

    def row(label: str, cell: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(pooled[name]) for name in names) + " |")

    row("mean Dice, all volumes", lambda e: f"**{_dice(e)}**")
    row("mean Dice, ED / ES", lambda e: f"{_dice(e, 'ED')} / {_dice(e, 'ES')}")
    for structure in STRUCTURES:
        row(f"{structure} Dice (all / ED / ES)", lambda e, s=structure: " / ".join(
            f"{e['volumes'][group]['dice'][s]:.3f}" for group in ("all", "ED", "ES")))
    row("HD95 mean (mm)", lambda e: f"{e['volumes']['all']['hd95']['mean']:.1f}")
    row(f"volumes below {BAD_DICE:.2f} mean Dice", lambda e: str(e["below_0.80"]))
    row("missed / invented structures", lambda e: f"{sum(e['volumes']['all']['misses'].values())} / "
        f"{sum(e['volumes']['all']['false_detections'].values())}")
    for index in INDICES:
        row(f"{index} bias / SD / r", lambda e, i=index: _agreement(e, i))
    row("QC flagged / bad volumes caught", lambda e: "n/a" if "qc" not in e else
        f"{e['qc']['flagged']} / {e['qc']['flagged_bad']} of {e['qc']['bad']}")
    row("seconds per volume (contended)", lambda e: "n/a" if "seconds_per_volume" not in e else
        f"{e['seconds_per_volume']:.2f}")
    if report.get("acdc96_crops"):
        crops = report["acdc96_crops"]
        lines += ["", f"The acdc96 recipe on the acdc96 crops of the same patients (its cv's own scoring, with its TTA): "
                  f"mean Dice {_dice(crops)} (ED {_dice(crops, 'ED')}, ES {_dice(crops, 'ES')})."]
    lines += ["", "| fold | volumes | " + " | ".join(f"{name}: mean (RV / Myo / LV)" for name in names) + " |",
              "|---" * (len(names) + 2) + "|"]
    for fold, entries in report["folds"].items():
        cells = [f"{_dice(e)} ({_structures(e)})" for e in entries.values()]
        lines.append(f"| {fold} | {entries[NATIVE]['n_volumes']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acdc96", type=existing_folder, default=str(ROOT.parent / "shared" / "data" / "acdc96"))
    parser.add_argument("--native", type=existing_folder, default=str(ROOT.parent / "shared" / "data" / "acdc_native"))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "side_acdc96"), help="the acdc96 recipe's cv folder")
    parser.add_argument("--native-cv", type=existing_folder, default=None,
                        help="the native recipe's cv folder: its fold configs are checked and its cv_volumes.json "
                             "read (default: benchmarks/results/native_cv/cv_volumes.json, folds not checked)")
    parser.add_argument("--only", type=int, action="append", metavar="K", help="train just fold K (repeatable)")
    parser.add_argument("--skip-train", action="store_true", help="train nothing: report the folds already finished")
    parser.add_argument("--tta", action="store_true", help="also predict with the acdc96 recipe's TTA (slower)")
    parser.add_argument("--out", default=str(RESULTS / "native_side_by_side"),
                        help="results file stem (.json and .md are written)")
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    acdc96, native = recipe_configs(Path(args.acdc96), Path(args.native))
    try:
        held_out = check_same_folds(acdc96, native, args.native_cv)
        torch.set_num_threads(acdc96.threads or 1)
        if not args.skip_train:
            cross_validate(acdc96, FOLDS, runs, only=args.only, progress=False)
        done = finished_folds(runs, acdc96)
        if not done:
            raise CmrsegError(f"{runs}: no finished fold of the acdc96 cv to report; train one first (without --skip-train)")
        folds = {k: held_out[k] for k in done}
        native_file = (args.native_cv or RESULTS / "native_cv") / "cv_volumes.json"
        sides: dict[str, dict[int, dict[str, Any]]] = {NATIVE: dict.fromkeys(folds, read_scores(native_file))}
        for name, kind in PREDICTIONS.items():
            if kind == "plain" or args.tta:
                sides[name] = {k: fold_scores(runs, acdc96, native, k, kind == "tta") for k in folds}
    except CmrsegError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = {"measured": run_metadata(ROOT), "command": " ".join(["python", *sys.argv]),
              "held_out": [str(k) for k in folds], "patients": {str(k): p for k, p in folds.items()},
              "native_cv_volumes": str(native_file), **side_by_side(sides, folds),
              "acdc96_crops": crop_scores(runs, folds)}
    write_json_atomic(f"{args.out}.json", report)
    write_text_atomic(f"{args.out}.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
