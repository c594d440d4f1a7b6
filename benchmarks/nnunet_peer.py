"""nnU-Net v2's `2d` configuration as cmrseg's peer on acdc_native (#25): cmrseg's folds, cmrseg's CPU time, cmrseg's scores.

The peer a user would pick instead of cmrseg, trained on the same patients as each fold of cmrseg's native
cross-validation (``cmrseg cv --config configs/acdc_native.json --folds 5``), for the CPU time of one cmrseg fold,
then asked to segment that fold's held-out native volumes, which cmrseg scores per volume at native resolution with
its own metrics (:func:`cmrseg.evaluation.volume_scoring.score_volume_masks`: 3D Dice, HD95 in mm, LV/RV EF, EDV,
LV mass agreement). cmrseg's native recipe on the same volumes is read from the cv folder's ``cv_volumes.json``.

nnU-Net is not a cmrseg dependency: it lives in its own venv, outside the repository, and this script (run with
cmrseg's venv) calls its command-line tools from there. Setup, once (torch first, the CPU wheel, exactly that version;
nnU-Net's default 2d network does not import torchvision)::

    python3.11 -m venv /work/nnunet-venv
    /work/nnunet-venv/bin/pip install torch==2.13.0
    /work/nnunet-venv/bin/pip install nnunetv2==2.8.1 torch==2.13.0
    /work/nnunet-venv/bin/pip uninstall -y torchvision

Then, per fold (each step is skipped when its output is already in ``--work``)::

    .venv/bin/python benchmarks/nnunet_peer.py --folds 0 [--cpu-minutes 17] [--nnunet-venv /work/nnunet-venv]

1. The folds come from cmrseg itself (:func:`cmrseg.data.dataset.kfold_split` on the config's split seed, by
   patient, as ``cross_validate`` splits), checked against the held-out cases of ``--cv``'s ``cv_per_image.csv``.
2. ``--work`` (git-ignored ``runs/nnunet_peer``) gets nnU-Net's raw dataset ``DatasetNNN_ACDCnative`` (links to
   ``--data``'s ED and ES volumes, ``_0000`` channel suffix, labels 1 RV, 2 Myo, 3 LV as ACDC's), its
   ``dataset.json``, ``nnUNetv2_plan_and_preprocess -c 2d`` and ``splits_final.json`` holding cmrseg's folds.
3. Training goes through a trainer subclass written into the nnU-Net venv's trainer folder (where nnU-Net looks
   for ``-tr`` classes) that changes only the schedule's length: epochs, iterations per epoch and validation
   batches per epoch (and one torch thread, and no end-of-training validation pass: step 4 predicts the fold).
   Its size comes from the CPU budget: a one-epoch probe measures the CPU seconds of one training iteration and of an
   epoch's fixed cost (its validation batches, checkpoint, plot) on this machine, then the fold trains
   ``floor(budget / (iterations x iteration + epoch cost))`` epochs (at least one), each lengthened to use the rest. Data augmentation runs in the training process (``nnUNet_n_proc_DA=0``).
4. ``nnUNetv2_predict -c 2d -f K`` (its defaults: sliding window, mirroring TTA; one thread for the network)
   predicts the held-out native volumes; cmrseg scores them and writes ``--out`` (.json and .md): per fold and
   pooled, nnU-Net beside cmrseg on the same volumes, with the training CPU minutes, epochs and iterations.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg.commands.common import existing_folder
from cmrseg.config import load_config
from cmrseg.data.dataset import kfold_split
from cmrseg.data.readers import VolumeCase, list_cases, load_volume
from cmrseg.data.readers.layouts import NNUNET_CHANNEL
from cmrseg.data.readers.nifti import check_labels, load_nifti
from cmrseg.errors import CmrsegError
from cmrseg.evaluation.volume_scoring import score_volume_masks
from cmrseg.io.atomic import write_json_atomic, write_text_atomic
from cmrseg.metrics.clinical import agreement
from cmrseg.metrics.volumes import summarize_volumes
from cmrseg.utils import write_results

ROOT = Path(__file__).resolve().parent.parent
DATASET_NAME = "ACDCnative"
LABELS = {"background": 0, "RV": 1, "MLV": 2, "LVC": 3}
"""ACDC's label map (acdc_native's README: 1 RV, 2 Myo, 3 LV), named as nnU-Net's own ACDC conversion names it."""
FOLD_MINUTES = 17.0
"""CPU minutes of one fold of cmrseg's native recipe on one core (BENCHMARKS.md, "Native resolution")."""
PROBE_ITERATIONS = 3
INDICES = ("LV_EF_pct", "RV_EF_pct", "LV_EDV_ml", "LV_mass_g")

TRAINER_TEMPLATE = '''"""Written by cmrseg's benchmarks/nnunet_peer.py: nnU-Net's default trainer with only the schedule's length
changed ({epochs} epochs of {iterations} iterations, {val_iterations} validation batches per epoch), one torch thread, and no
end-of-training validation pass (the benchmark predicts the held-out fold with nnUNetv2_predict). Each epoch's CPU
seconds go to cmrseg_cpu.json in the fold's folder."""
import json
import os
import time

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {name}(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = {val_iterations}
        torch.set_num_threads(1)
        self.cmrseg_epochs = []

    def on_train_epoch_start(self):
        self.cmrseg_start = (time.process_time(), time.time())
        super().on_train_epoch_start()

    def on_validation_epoch_start(self):
        self.cmrseg_train = (time.process_time(), time.time())
        super().on_validation_epoch_start()

    def on_epoch_end(self):
        super().on_epoch_end()
        cpu, wall = time.process_time(), time.time()
        self.cmrseg_epochs.append({{"train_cpu_s": self.cmrseg_train[0] - self.cmrseg_start[0],
                                   "epoch_cpu_s": cpu - self.cmrseg_start[0], "epoch_wall_s": wall - self.cmrseg_start[1]}})
        with open(os.path.join(self.output_folder, "cmrseg_cpu.json"), "w") as handle:
            json.dump({{"iterations": self.num_iterations_per_epoch, "epochs": self.cmrseg_epochs}}, handle, indent=1)

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.print_to_log_file("cmrseg: end-of-training validation skipped (the benchmark predicts this fold)")
'''


def fold_cases(data: Path, config_path: Path, folds: int) -> list[list[VolumeCase]]:
    """Each fold's held-out cases, split by patient as ``cmrseg cv`` splits them (:func:`kfold_split`, the config's
    split seed): the partition depends only on the sorted patients and the seed, so cases stand in for slices."""
    config = load_config(config_path)
    cases = list_cases(data)
    ids = [case.case for case in cases]
    patient_of = {case.case: case.patient for case in cases}
    held_out = [set(kfold_split(ids, folds, k, config.data_split_seed, config.group_pairs, patient_of)[1])
                for k in range(folds)]
    return [[case for case in cases if case.case in fold] for fold in held_out]


def check_against_cv(held_out: list[list[VolumeCase]], cv_dir: Path) -> str:
    """Refuse folds that differ from the held-out cases of a finished ``cmrseg cv`` folder (its cv_per_image.csv)."""
    table = cv_dir / "cv_per_image.csv"
    if not table.is_file():
        return f"not checked: {table} not found"
    cv_cases: dict[int, set[str]] = {}
    with table.open() as handle:
        for row in csv.DictReader(handle):
            cv_cases.setdefault(int(row["fold"]), set()).add(row["id"].rsplit("_z", 1)[0])
    for fold, cases in cv_cases.items():
        mine = {case.case for case in held_out[fold]}
        if mine != cases:
            raise CmrsegError(f"{table}: fold {fold} held out {sorted(cases - mine)[:3]}..., not {sorted(mine - cases)[:3]}...: "
                              "the folds differ from cmrseg's split of --data with --config", key="cv")
    return f"checked against {table}: folds {sorted(cv_cases)} hold out the same cases"


class Nnunet:
    """nnU-Net's tools in their venv, with their folders under ``work`` and one thread."""

    def __init__(self, venv: Path, work: Path, dataset_id: int) -> None:
        self.bin = venv / "bin"
        if not (self.bin / "nnUNetv2_train").is_file():
            raise CmrsegError(f"{venv}: no nnUNetv2_train in bin/; install nnU-Net there (see this script's docstring)",
                              key="nnunet_venv")
        self.work = work
        self.dataset = f"Dataset{dataset_id:03d}_{DATASET_NAME}"
        self.dataset_id = dataset_id
        self.raw = work / "nnUNet_raw" / self.dataset
        self.preprocessed = work / "nnUNet_preprocessed" / self.dataset
        self.results = work / "nnUNet_results" / self.dataset
        self.env = {**os.environ, "nnUNet_raw": str(work / "nnUNet_raw"),
                    "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"), "nnUNet_results": str(work / "nnUNet_results"),
                    "nnUNet_def_n_proc": "1", "nnUNet_compile": "false",
                    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def run(self, tool: str, args: list[str], log: Path, augmentation_processes: int = 1) -> dict[str, float]:
        """Run one nnU-Net tool, its output in ``log``; wall and CPU seconds (its process tree's). Training passes
        ``augmentation_processes`` 0 (augmentation in the training process); the planner needs at least 1."""
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
        env = {**self.env, "nnUNet_n_proc_DA": str(augmentation_processes)}
        with log.open("a") as handle:
            done = subprocess.run([str(self.bin / tool), *args], env=env, stdout=handle, stderr=subprocess.STDOUT)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode:
            raise CmrsegError(f"{tool} failed (exit {done.returncode}); see {log}")
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return {"wall_s": round(time.time() - start, 1), "cpu_s": round(cpu, 1)}

    def trainer_folder(self) -> Path:
        """nnU-Net's trainer package in its venv, where ``-tr`` names are looked up."""
        found = subprocess.run([str(self.bin / "python"), "-c", "import nnunetv2, os; print(os.path.dirname(nnunetv2.__file__))"],
                               capture_output=True, text=True, check=True, env=self.env)
        return Path(found.stdout.strip()) / "training" / "nnUNetTrainer"

    def write_trainer(self, epochs: int, iterations: int, val_iterations: int) -> str:
        """Write the budget trainer class into nnU-Net's trainer folder; its name."""
        name = f"nnUNetTrainer_cmrseg_{epochs}ep_{iterations}it"
        source = TRAINER_TEMPLATE.format(name=name, epochs=epochs, iterations=iterations, val_iterations=val_iterations)
        path = self.trainer_folder() / f"{name}.py"
        if not path.is_file() or path.read_text() != source:
            path.write_text(source)
        return name

    def model_folder(self, trainer: str) -> Path:
        return self.results / f"{trainer}__nnUNetPlans__2d"


def write_raw_dataset(nnunet: Nnunet, cases: list[VolumeCase]) -> None:
    """nnU-Net's raw dataset: links to every ED/ES volume and its labels, and dataset.json (nothing is copied)."""
    images, labels = nnunet.raw / "imagesTr", nnunet.raw / "labelsTr"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(exist_ok=True)
    for case in cases:
        if case.label_path is None:
            raise CmrsegError(f"{case.image_path}: no label volume", key="data")
        for link, target in ((images / f"{case.case}{NNUNET_CHANNEL}.nii.gz", case.image_path),
                             (labels / f"{case.case}.nii.gz", case.label_path)):
            if not link.is_symlink():
                link.symlink_to(target.resolve())
    write_json_atomic(nnunet.raw / "dataset.json", {
        "channel_names": {"0": "cineMRI"}, "labels": LABELS, "numTraining": len(cases), "file_ending": ".nii.gz",
        "name": DATASET_NAME, "description": "acdc_native: ACDC's 50 training patients, ED and ES, native resolution",
    })


def preprocess(nnunet: Nnunet, held_out: list[list[VolumeCase]], log: Path) -> dict[str, Any]:
    """Plan and preprocess the 2d configuration once, then write cmrseg's folds as ``splits_final.json``."""
    timing: dict[str, Any] = {}
    if not (nnunet.preprocessed / "nnUNetPlans_2d").is_dir():
        timing = nnunet.run("nnUNetv2_plan_and_preprocess", ["-d", str(nnunet.dataset_id), "-c", "2d", "-np", "1",
                                                              "--verify_dataset_integrity"], log)
    every = [case.case for fold in held_out for case in fold]
    splits = [{"train": sorted(c for c in every if c not in {v.case for v in fold}), "val": sorted(v.case for v in fold)}
              for fold in held_out]
    write_json_atomic(nnunet.preprocessed / "splits_final.json", splits)
    plans = json.loads((nnunet.preprocessed / "nnUNetPlans.json").read_text())["configurations"]["2d"]
    return {**timing, "patch_size": plans["patch_size"], "batch_size": plans["batch_size"],
            "spacing": plans["spacing"], "normalization": plans["normalization_schemes"]}


def epoch_costs(model_dir: Path) -> dict[str, Any]:
    """What the budget trainer recorded: CPU seconds per training iteration and per epoch outside them."""
    record = json.loads((model_dir / "cmrseg_cpu.json").read_text())
    epochs, iterations = record["epochs"], record["iterations"]
    train = sum(e["train_cpu_s"] for e in epochs)
    total = sum(e["epoch_cpu_s"] for e in epochs)
    return {"epochs": len(epochs), "iterations_per_epoch": iterations, "cpu_s_per_iteration": train / (len(epochs) * iterations),
            "cpu_s_per_epoch_overhead": (total - train) / len(epochs), "epochs_cpu_minutes": total / 60.0,
            "epochs_wall_minutes": sum(e["epoch_wall_s"] for e in epochs) / 60.0}


def budget_schedule(probe: dict[str, Any], cpu_minutes: float, iterations: int) -> tuple[int, int]:
    """(epochs, iterations per epoch) that fit ``cpu_minutes`` at the probe's measured costs: as many epochs of
    ``iterations`` as fit (at least one), then each epoch stretched to use what is left of the budget."""
    budget, step, fixed = cpu_minutes * 60.0, probe["cpu_s_per_iteration"], probe["cpu_s_per_epoch_overhead"]
    epochs = max(1, math.floor(budget / (iterations * step + fixed)))
    return epochs, max(iterations if epochs > 1 else 1, math.floor((budget / epochs - fixed) / step))


def train_fold(nnunet: Nnunet, fold: int, cpu_minutes: float, iterations: int, val_iterations: int, log: Path
               ) -> tuple[str, dict[str, Any]]:
    """Probe the costs once (on the first fold run: an iteration costs the same on every fold), then train fold
    ``fold`` for the epochs that fit the budget; the trainer and its record."""
    probe_trainer = nnunet.write_trainer(1, PROBE_ITERATIONS, val_iterations)
    probed = sorted(nnunet.model_folder(probe_trainer).glob("fold_*/cmrseg_cpu.json"))
    probe_dir = probed[0].parent if probed else nnunet.model_folder(probe_trainer) / f"fold_{fold}"
    if not probed:
        nnunet.run("nnUNetv2_train", [str(nnunet.dataset_id), "2d", str(fold), "-tr", probe_trainer, "-device", "cpu"], log, 0)
    probe = epoch_costs(probe_dir)
    epochs, iterations = budget_schedule(probe, cpu_minutes, iterations)
    trainer = nnunet.write_trainer(epochs, iterations, val_iterations)
    fold_dir = nnunet.model_folder(trainer) / f"fold_{fold}"
    timing: dict[str, Any] = {}
    if not (fold_dir / "checkpoint_final.pth").is_file():
        timing = nnunet.run("nnUNetv2_train", [str(nnunet.dataset_id), "2d", str(fold), "-tr", trainer, "-device", "cpu"], log, 0)
        write_json_atomic(fold_dir / "cmrseg_process.json", timing)
    elif (fold_dir / "cmrseg_process.json").is_file():
        timing = json.loads((fold_dir / "cmrseg_process.json").read_text())
    costs = epoch_costs(fold_dir)
    return trainer, {"trainer": trainer, "budget_cpu_minutes": cpu_minutes, "probe": probe, **costs,
                     "val_iterations_per_epoch": val_iterations, "iterations": costs["epochs"] * costs["iterations_per_epoch"],
                     "process": timing}


def predict_fold(nnunet: Nnunet, trainer: str, fold: int, cases: list[VolumeCase], log: Path) -> tuple[Path, dict[str, Any]]:
    """``nnUNetv2_predict`` of the fold's held-out volumes with its final weights; the output folder and its timing."""
    inputs = nnunet.work / f"heldout_fold_{fold}"
    out = nnunet.work / f"predicted_{trainer}_fold_{fold}"
    inputs.mkdir(parents=True, exist_ok=True)
    for case in cases:
        link = inputs / f"{case.case}{NNUNET_CHANNEL}.nii.gz"
        if not link.is_symlink():
            link.symlink_to(case.image_path.resolve())
    timing_file = out / "cmrseg_timing.json"
    if not all((out / f"{case.case}.nii.gz").is_file() for case in cases) or not timing_file.is_file():
        timing = nnunet.run("nnUNetv2_predict", ["-i", str(inputs), "-o", str(out), "-d", str(nnunet.dataset_id), "-c", "2d",
                                                 "-f", str(fold), "-tr", trainer, "-chk", "checkpoint_final.pth",
                                                 "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_progress_bar"], log)
        timing["seconds_per_volume"] = round(timing["wall_s"] / len(cases), 2)
        timing["cpu_s_per_volume"] = round(timing["cpu_s"] / len(cases), 2)
        write_json_atomic(timing_file, timing)
    return out, json.loads(timing_file.read_text())


def predicted_masks(out: Path, volumes: list[Any]) -> list[np.ndarray]:
    """nnU-Net's label volumes, read as cmrseg reads labels, on their images' grids."""
    masks = []
    for volume in volumes:
        path = out / f"{volume.case}.nii.gz"
        mask = check_labels(path, load_nifti(path)[1])
        if mask.shape != volume.label.shape:
            raise CmrsegError(f"{path}: shape {mask.shape} differs from its image's {volume.label.shape}")
        masks.append(mask)
    return masks


def summary(scored: dict[str, Any]) -> dict[str, Any]:
    """The numbers the tables show: per-volume Dice and HD95 (all, ED, ES) and the indices' agreement."""
    return {"n_volumes": scored["n_volumes"],
            **{name: {"dice": scored["volumes"][name]["dice"], "hd95_mm": scored["volumes"][name]["hd95"]}
               for name in ("all", "ED", "ES")},
            "agreement": {k: v for k, v in scored["agreement"].items() if k in INDICES}}


def cmrseg_on(cv_dir: Path, cases: set[str]) -> dict[str, Any] | None:
    """cmrseg's native recipe on the same volumes, from the cv folder's per-volume scores and indices."""
    path = cv_dir / "cv_volumes.json"
    if not path.is_file():
        return None
    cv = json.loads(path.read_text())
    rows = [row for row in cv["per_volume"] if row["case"] in cases]
    patients = {row["patient"] for row in rows}
    predicted = [row for row in cv["indices"] if row["patient"] in patients]
    true = [row for row in cv["true_indices"] if row["patient"] in patients]
    return summary({"n_volumes": len(rows), "volumes": summarize_volumes(rows)["volumes"], "agreement": agreement(predicted, true)})


def run_fold(nnunet: Nnunet, fold: int, cases: list[VolumeCase], args: argparse.Namespace) -> dict[str, Any]:
    """Train, predict and score one fold; its record (also kept in the work folder)."""
    log = nnunet.work / f"fold_{fold}.log"
    trainer, training = train_fold(nnunet, fold, args.cpu_minutes, args.iterations, args.val_iterations, log)
    out, prediction = predict_fold(nnunet, trainer, fold, cases, log)
    volumes = [load_volume(case) for case in cases]
    scored = score_volume_masks(volumes, predicted_masks(out, volumes))
    write_json_atomic(nnunet.work / f"fold_{fold}_scores.json", scored)
    record = {"fold": fold, "cases": [case.case for case in cases], "training": training, "prediction": prediction,
              "nnunet": summary(scored), "per_volume_rows": scored["per_volume"], "indices": scored["indices"],
              "true_indices": scored["true_indices"]}
    write_json_atomic(nnunet.work / f"fold_{fold}_record.json", record)
    return record


def pooled(records: list[dict[str, Any]], cv_dir: Path) -> dict[str, Any]:
    """Every scored fold's volumes together, nnU-Net and cmrseg."""
    rows = [row for r in records for row in r["per_volume_rows"]]
    predicted = [row for r in records for row in r["indices"]]
    true = [row for r in records for row in r["true_indices"]]
    nnunet = summary({"n_volumes": len(rows), "volumes": summarize_volumes(rows)["volumes"], "agreement": agreement(predicted, true)})
    return {"folds": [r["fold"] for r in records], "nnunet": nnunet,
            "cmrseg": cmrseg_on(cv_dir, {case for r in records for case in r["cases"]})}


def _dice_cells(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "| n/a | n/a | n/a | n/a | n/a |"
    dice = entry["all"]["dice"]
    return f"| {dice['mean']:.3f} | {dice['RV']:.3f} | {dice['Myo']:.3f} | {dice['LV']:.3f} | {entry['all']['hd95_mm']['mean']:.1f} |"


def markdown(result: dict[str, Any]) -> str:
    """The per-fold and pooled tables of the results."""
    lines = ["# nnU-Net v2 2d peer on acdc_native (benchmarks/nnunet_peer.py)", "",
             f"Measured: {result['measured']['date']}, commit {result['measured']['commit']}, {result['measured']['machine']}.",
             f"Folds: {result['folds_check']}. Budget: {result['cpu_minutes']} CPU minutes of training per fold.", "",
             "| fold | model | volumes | mean Dice | RV | Myo | LV | HD95 mean (mm) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    rows = [(str(r["fold"]), r["nnunet"], r["cmrseg"]) for r in result["per_fold"]]
    rows.append(("pooled", result["pooled"]["nnunet"], result["pooled"]["cmrseg"]))
    for fold, peer, ours in rows:
        lines.append(f"| {fold} | nnU-Net 2d | {peer['n_volumes']} {_dice_cells(peer)}")
        lines.append(f"| {fold} | cmrseg native | {ours['n_volumes'] if ours else 'n/a'} {_dice_cells(ours)}")
    lines += ["", "| fold | trainer | epochs x iterations | patch, batch | train CPU min (wall) | CPU s / iteration | "
              "predict s / volume (CPU s) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["per_fold"]:
        t, p = r["training"], r["prediction"]
        lines.append(f"| {r['fold']} | {t['trainer']} | {t['epochs']} x {t['iterations_per_epoch']} | {result['plan']['patch_size']}, "
                     f"{result['plan']['batch_size']} | {t['epochs_cpu_minutes']:.1f} ({t['epochs_wall_minutes']:.1f}) | "
                     f"{t['cpu_s_per_iteration']:.1f} | {p['seconds_per_volume']} ({p['cpu_s_per_volume']}) |")
    lines += ["", "Index agreement, pooled (bias, SD, r; predicted - true):", "",
              "| index | nnU-Net 2d | cmrseg native |", "| --- | --- | --- |"]
    ours_agreement = (result["pooled"]["cmrseg"] or {}).get("agreement", {})
    for index in INDICES:
        cells = []
        for stats in (result["pooled"]["nnunet"]["agreement"].get(index), ours_agreement.get(index)):
            cells.append("n/a" if stats is None else f"{stats['bias']:+.2f}, {stats['sd']:.2f}, {stats['r']:.3f}")
        lines.append(f"| {index} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=existing_folder, default=ROOT.parent / "shared" / "data" / "acdc_native")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "acdc_native.json",
                        help="cmrseg config whose split seed makes the folds")
    parser.add_argument("--cv", type=Path, default=ROOT / "runs" / "native_cv",
                        help="cmrseg's cv folder of the native recipe: its folds are checked, its volumes compared")
    parser.add_argument("--folds", type=int, nargs="+", default=[0], help="folds to run (of 5)")
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument("--cpu-minutes", type=float, default=FOLD_MINUTES, help="training CPU budget per fold")
    parser.add_argument("--iterations", type=int, default=10, help="training iterations per epoch")
    parser.add_argument("--val-iterations", type=int, default=1, help="validation batches per epoch")
    parser.add_argument("--nnunet-venv", type=Path, default=Path("/work/nnunet-venv"))
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "nnunet_peer", help="nnU-Net's folders (outside git)")
    parser.add_argument("--dataset-id", type=int, default=825)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "nnunet_peer.json")
    args = parser.parse_args()
    try:
        held_out = fold_cases(args.data, args.config, args.n_folds)
        checked = check_against_cv(held_out, args.cv)
        print(checked, flush=True)
        nnunet = Nnunet(args.nnunet_venv, args.work.resolve(), args.dataset_id)
        write_raw_dataset(nnunet, [case for fold in held_out for case in fold])
        plan = preprocess(nnunet, held_out, args.work / "preprocess.log")
        records = []
        for fold in args.folds:
            record = run_fold(nnunet, fold, held_out[fold], args)
            records.append(record)
            print(f"fold {fold}: nnU-Net {record['nnunet']['all']['dice']['mean']:.3f}", flush=True)
        done = sorted({*args.folds, *(int(p.stem.split("_")[1]) for p in args.work.glob("fold_*_record.json"))})
        records = [json.loads((args.work / f"fold_{k}_record.json").read_text()) for k in done]
    except CmrsegError as err:
        sys.exit(f"nnunet_peer: error: {err}")
    result = {"data": str(args.data), "folds_check": checked, "cpu_minutes": args.cpu_minutes, "plan": plan,
              "per_fold": [{"fold": r["fold"], "training": r["training"], "prediction": r["prediction"], "nnunet": r["nnunet"],
                            "cmrseg": cmrseg_on(args.cv, set(r["cases"]))} for r in records],
              "pooled": pooled(records, args.cv)}
    path = write_results(args.out, result)
    write_text_atomic(path.with_suffix(".md"), markdown(json.loads(path.read_text())))
    print(markdown(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
