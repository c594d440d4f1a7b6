"""The model card: what a colleague needs to judge a model (architecture, size, data, provenance, metrics,
intended use and limits), as JSON and as short Markdown."""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cmrseg.constants import VERSION
from cmrseg.config import ExperimentConfig
from cmrseg.constants import CLASS_NAMES
from cmrseg.errors import CmrsegError
from cmrseg.formats.version import FORMAT_VERSION

CARD_JSON = "model_card.json"
CARD_MARKDOWN = "MODEL_CARD.md"
INTENDED_USE = (
    "Research segmentation of the right ventricle (RV), myocardium (Myo) and left-ventricle cavity (LV) in 2D "
    "short-axis cardiac cine MR slices stored as 8-bit grayscale images like the training data."
)
LIMITS = (
    "Not a medical device and not validated for clinical use. The metrics in this card were measured on the stated "
    "validation split only; other scanners, sequences, long-axis views, field strengths, pathologies, paediatric "
    "hearts or very different image sizes are untested. Check every mask visually before using it."
)


def _git_commit() -> str | None:
    """The commit of the cmrseg source doing the export, when it is a git checkout."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=False)
        if result.returncode == 0:
            return result.stdout.strip()
    return None


def _metrics(history: list[dict[str, float]]) -> dict[str, Any]:
    """The card's metrics: the best and last rows of the run's ``history.csv`` and how they were measured."""
    how = ("mean Dice per image (RV, Myo, LV; absent in both = 1) on the run's validation split after each epoch, "
           "argmax of the network without TTA or post-processing; the best row is the epoch whose weights are exported")
    if not history:
        return {"how_measured": "no training history (an ensemble or an imported run); "
                                "measure it with 'cmrseg evaluate --run MODEL --data DIR'"}
    valid = [row for row in history if not math.isnan(row.get("dice_mean", math.nan))]
    if not valid:
        return {"how_measured": "no validation split (split_mode 'full'): the exported weights are the last epoch's",
                "epochs": len(history), "best": None, "last": history[-1]}
    return {"how_measured": how, "epochs": len(history), "best": max(valid, key=lambda row: row["dice_mean"]),
            "last": history[-1]}


CARD_NOTES = ("name", "version", "training_data_description", "training", "cross_validation", "expected_input",
              "intended_use", "limits")
"""Model-card keys that notes may set (a shipped model's: :mod:`cmrseg.pretrained_models`)."""


def card_notes(folder: Path, notes: Mapping[str, Any] | None) -> dict[str, Any]:
    """``notes`` checked against :data:`CARD_NOTES`, or those of the card an unpacked export in ``folder`` already has."""
    if notes is None:
        with contextlib.suppress(OSError, ValueError):
            previous = json.loads((folder / CARD_JSON).read_text())
            notes = {key: previous[key] for key in previous.get("notes", [])}
    unknown = sorted(set(notes or {}) - set(CARD_NOTES))
    if unknown:
        raise CmrsegError(f"model card notes {unknown}: unknown; expected some of {', '.join(CARD_NOTES)}")
    return dict(notes or {})


def model_card(config: ExperimentConfig, normalization: dict[str, Any], parameters: int,
               history: list[dict[str, float]], recorded: dict[str, Any] | None, images: int | None,
               weights_saved: str, notes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a colleague needs to judge the model: architecture, size, data, provenance, metrics, use and limits.

    ``history`` is the run's per-epoch rows, ``recorded`` its ``data.json``, ``images`` the number of training
    images (None when unknown: then ``recorded``'s slice count), ``weights_saved`` when the weights were saved
    (:func:`weights_time`); the caller reads them from the run folder. ``notes`` (checked by :func:`card_notes`) add
    to or replace these (a shipped model's card)."""
    info = config.model_info
    members = info.options.get("members") if info.name == "Ensemble" else None
    train_path = config.dataset_info.train_data_path
    if images is None and recorded is not None:
        images = recorded.get("n_slices")
    return {
        "format_version": FORMAT_VERSION,
        "architecture": info.name,
        "model_info": info.model_dump(mode="json", exclude={"options"} if members else set()),
        "ensemble_members": [m.get("model_info", {}).get("name") for m in members] if members else None,
        "parameters": parameters,
        "labels": list(CLASS_NAMES),
        "normalization": normalization,
        "training_data": {"path": train_path, "images": images, "split_mode": config.split_mode,
                          "val_fraction": config.val_fraction, "seed": config.seed, "epochs_configured": config.epochs,
                          "recorded": recorded},
        "prediction": {"tta": config.tta, "tta_scales": config.tta_scales,
                       "postprocess": config.postprocess.model_dump(mode="json")},
        "metrics": _metrics(history),
        "weights_saved": weights_saved,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cmrseg_version": VERSION,
        "cmrseg_commit": _git_commit(),
        "intended_use": INTENDED_USE,
        "limits": LIMITS,
    } | (extra := dict(notes or {})) | ({"notes": sorted(extra)} if extra else {})


def weights_time(folder: Path, weights: Path, exported_weights: bool) -> str:
    """When the exported weights were saved: an unpacked export's card says (its files carry the unpack time),
    else the checkpoint file's time."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        card = json.loads((folder / CARD_JSON).read_text()) if exported_weights else {}
        saved = card.get("weights_saved")
        if isinstance(saved, str) and datetime.datetime.fromisoformat(saved):
            return saved
    return datetime.datetime.fromtimestamp(weights.stat().st_mtime, datetime.timezone.utc).isoformat(timespec="seconds")


def card_markdown(card: dict[str, Any]) -> str:
    """The model card as short Markdown."""
    data, metrics = card["training_data"], card["metrics"]
    title = f"{card['name']} {card.get('version', '')}".strip() if card.get("name") else f"cmrseg {card['architecture']}"
    lines = [
        f"# Model card: {title}", "",
        f"- Architecture: {card['architecture']}" + (f" of {', '.join(map(str, card['ensemble_members']))}"
                                                     if card["ensemble_members"] else ""),
        f"- Parameters: {card['parameters']:,}",
        f"- Labels: {', '.join(f'{i} {name}' for i, name in enumerate(card['labels']))}",
        f"- Normalisation: {card['normalization']['mode']} (mean {card['normalization']['mean']:.4g}, "
        f"std {card['normalization']['std']:.4g})",
        f"- Training data: {data['path']} ({data['images'] if data['images'] is not None else 'unknown number of'} images; "
        f"split {data['split_mode']}, validation fraction {data['val_fraction']}, seed {data['seed']})",
        f"- Prediction defaults: TTA {'on' if card['prediction']['tta'] else 'off'} (zooms "
        f"{card['prediction']['tta_scales']}), largest component {card['prediction']['postprocess']['largest_component']}, "
        f"class weights {card['prediction']['postprocess']['class_weights']}",
        f"- Weights saved {card['weights_saved']}; exported {card['exported']} by cmrseg {card['cmrseg_version']}"
        f" (commit {card['cmrseg_commit'] or 'unknown'})", "",
        "## Metrics", "", metrics["how_measured"] + ".", "",
    ]
    if metrics.get("best"):
        lines += ["| row | epoch | " + " | ".join(f"Dice {s}" for s in CLASS_NAMES[1:]) + " | mean |",
                  "|---|---|" + "---|" * len(CLASS_NAMES)]
        for label in ("best", "last"):
            row = metrics[label]
            dice = " | ".join(f"{row.get(f'dice_{s}', math.nan):.4f}" for s in CLASS_NAMES[1:])
            lines.append(f"| {label} | {int(row['epoch'])} | {dice} | {row.get('dice_mean', math.nan):.4f} |")
        lines.append("")
    for key, heading in (("training_data_description", "Training data"), ("training", "Training"),
                         ("cross_validation", "Cross-validated accuracy"), ("expected_input", "Expected input")):
        lines += [f"## {heading}", "", card[key], ""] if card.get(key) else []
    lines += ["## Intended use", "", card["intended_use"], "", "## Limits", "", card["limits"], ""]
    return "\n".join(lines)
