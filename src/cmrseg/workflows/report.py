"""Self-contained HTML reports of a run or a sweep, for a person to read in a browser.

Every picture is embedded as a base64 PNG, so the single ``.html`` file can be mailed or archived.
A run report evaluates the run on its own validation split (rebuilt from its config) or on ``--data``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmrseg.constants import STRUCTURES
from cmrseg.errors import CmrsegError
from cmrseg.io.outputs import check_output_file

if TYPE_CHECKING:
    import numpy as np

    from cmrseg.inference.settings import PredictSettings

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px 32px; color: #1d2430; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 4px; } h2 { margin-top: 32px; border-bottom: 1px solid #d6dbe3; padding-bottom: 4px; }
.meta { color: #5b6575; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
th, td { border: 1px solid #d6dbe3; padding: 4px 10px; text-align: right; }
th { background: #eef1f6; } td.text, th.text { text-align: left; }
tr.best td { font-weight: bold; }
.wide { overflow-x: auto; } td:has(img) { text-align: center; }
img.plot { max-width: 100%; border: 1px solid #e3e7ee; }
img.slice { width: 144px; height: 144px; image-rendering: pixelated; display: block; }
pre { background: #f5f7fa; padding: 12px; border: 1px solid #e3e7ee; font-size: 0.85em; overflow-x: auto; }
.swatch { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; }
"""


SWEEP_COLUMNS = {"choice": "choice", "status": "status", "epochs_done": "epochs", "best_epoch": "best epoch",
                 **{f"dice_{name}": f"Dice {name}" for name in (*STRUCTURES, "mean")},
                 "final_train_loss": "final train loss", "final_val_loss": "final val loss", "minutes": "minutes"}
"""``sweep.csv`` columns shown in the report and their headings (the swept values are in ``choice``)."""


def _weights_text(weights: list[float] | None) -> str:
    """How the argmax was weighted, for the metrics sentence (empty for the plain argmax)."""
    return "" if not weights else f" and class weights {', '.join(f'{w:g}' for w in weights)} (background, RV, Myo, LV)"


def _tta_text(summary: dict) -> str:
    """Which test-time augmentation produced the metrics (empty without TTA)."""
    if not summary["tta"]:
        return ""
    scales = summary.get("tta_scales") or [1.0]
    return " and flip TTA" + ("" if scales == [1.0] else f" at zooms {', '.join(f'{s:g}' for s in scales)}")


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _img(data: bytes, alt: str, css: str) -> str:
    return f'<img class="{css}" alt="{html.escape(alt)}" src="{png_data_uri(data)}">'


def _array_png(array: Any) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _number(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _dice_cell(value: float) -> str:
    """A Dice cell tinted from red (0) through yellow to green (1) so weak structures stand out."""
    if math.isnan(value):
        return "<td>n/a</td>"
    return f'<td style="background: hsl({int(120 * max(0.0, min(1.0, value)))}, 70%, 88%)">{value:.3f}</td>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1, classes: Sequence[str] = ()) -> str:
    """An HTML table; cells of ``rows`` are already HTML (``<td>``...), except plain strings get wrapped."""
    head = "".join(f'<th class="{"text" if i < text_columns else ""}">{html.escape(h)}</th>' for i, h in enumerate(header))
    body = []
    for index, row in enumerate(rows):
        cells = "".join(cell if cell.startswith("<td") else
                        f'<td class="{"text" if i < text_columns else ""}">{html.escape(cell)}</td>' for i, cell in enumerate(row))
        css = f' class="{classes[index]}"' if index < len(classes) and classes[index] else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _page(title: str, subtitle: str, sections: Sequence[tuple[str, str]]) -> str:
    parts = [f"<h2>{html.escape(heading)}</h2>\n{body}" for heading, body in sections]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
            f'<p class="meta">{html.escape(subtitle)}</p>\n' + "\n".join(parts) + "\n</body></html>\n")


def _pre_json(data: object) -> str:
    return f"<pre>{html.escape(json.dumps(data, indent=2), quote=False)}</pre>"


def _legend() -> str:
    from cmrseg.plots import CLASS_COLORS

    items = "".join(f'<span class="swatch" style="background: rgb({",".join(str(int(c)) for c in CLASS_COLORS[i])})"></span>{name}'
                    for i, name in enumerate(STRUCTURES, start=1))
    return f"<p>Overlay colours:{items}</p>"


@dataclass
class Evaluated:
    """What a report shows: the scored slices and their predictions, where they come from, and on volume data
    the volumes and their predicted label volumes (each volume predicted once; its slices cut from it)."""

    summary: dict[str, Any]
    samples: list[Any]
    preds: list[np.ndarray]
    source: str
    volumes: list[Any] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    qc: Any = None
    """On volume data, the volumes' quality control (:class:`cmrseg.qc.QcResult`)."""


def _evaluate_slices(run_dir: Path, data_dir: str | Path | None, settings: PredictSettings | None) -> Evaluated:
    from cmrseg.evaluation import score_folder, score_samples, validation_samples

    if data_dir is not None:
        summary, samples, preds = score_folder(run_dir, data_dir, settings)
        return Evaluated(summary, samples, preds, f"{len(samples)} labeled images of {data_dir}")
    samples = validation_samples(run_dir)
    summary, preds = score_samples(run_dir, samples, settings)
    return Evaluated(summary, samples, preds, f"the run's validation split ({len(samples)} images, rebuilt from its config)")


def _evaluate_volumes(run_dir: Path, data_dir: str | Path | None, settings: PredictSettings | None,
                      qc_reference: str | Path | None = None) -> Evaluated:
    from cmrseg.data.slicing import volume_samples
    from cmrseg.evaluation.volume_scoring import run_volumes_with_qc, slice_scores

    volumes, masks, resolved, checked = run_volumes_with_qc(run_dir, data_dir, settings, False, qc_reference)
    summary = {**slice_scores(volumes, masks), **resolved.summary()}
    preds = [mask[:, :, z] for mask in masks for z in range(mask.shape[2])]
    where = f"of {data_dir}" if data_dir is not None else "of the run's validation split, rebuilt from its config"
    source = f"the {len(preds)} slices of {len(volumes)} labeled volumes {where}, each cut from its volume's prediction"
    return Evaluated(summary, volume_samples(volumes), preds, source, volumes, masks, checked)


def _curve_png(history: list[dict[str, float]]) -> bytes:
    from cmrseg.plots import plot_history

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "curves.png"
        plot_history(history, path)
        return path.read_bytes()


def _agreement_pngs(scored: dict[str, Any]) -> list[bytes]:
    from cmrseg.metrics.clinical import plot_agreement

    with tempfile.TemporaryDirectory() as tmp:
        paths = plot_agreement(scored["indices"], scored["true_indices"], Path(tmp) / "scatter.png",
                               Path(tmp) / "bland_altman.png")
        return [path.read_bytes() for path in paths]


def volume_sections(volumes: list[Any], masks: list[np.ndarray], max_volumes: int = 4, qc: Any = None
                    ) -> list[tuple[str, str]]:
    """Report sections of labeled volumes and their predicted label volumes: 3D metrics (all, ED, ES), slice
    positions, clinical-index agreement with its scatter and Bland-Altman plots, the worst volumes side by
    side with their truth, and with ``qc`` (:class:`cmrseg.qc.QcResult`) the cases quality control says to
    check first (:func:`qc_section`)."""
    from cmrseg.evaluation.volume_scoring import score_volume_masks
    from cmrseg.inference.volume_prediction import montage

    scored = score_volume_masks(volumes, masks, qc)
    columns, unit = [*STRUCTURES, "mean"], scored["hd95_unit"]
    summary = _table(["volumes", *(f"Dice {c}" for c in columns), f"HD95 mean ({unit})"], [
        [f"{name} ({group['n_volumes']})", *(_dice_cell(group["dice"][c]) for c in columns), _number(group["hd95"]["mean"], 2)]
        for name, group in scored["volumes"].items()])
    positions = _table(["slices", *(f"Dice {c}" for c in columns)], [
        [f"{name} ({entry['n_slices']})", *(_dice_cell(entry["dice"][c]) for c in columns)]
        for name, entry in scored["positions"].items()])
    agreement = _table(["index", "n", "bias", "SD", "MAE", "r"], [
        [name, str(s["n"]), f"{s['bias']:+.2f}", f"{s['sd']:.2f}", f"{s['mae']:.2f}", _number(s["r"])]
        for name, s in scored["agreement"].items()])
    plots = "".join(_img(png, "index agreement", "plot") for png in _agreement_pngs(scored))
    notes = "".join(f"<p>Note: {html.escape(n)}.</p>" for n in sorted({r["note"] for r in scored["indices"] if r["note"]}))
    by_case = {v.case: (v, m) for v, m in zip(volumes, masks, strict=True)}
    worst = sorted(scored["per_volume"], key=lambda row: row["dice"]["mean"])[:max_volumes]
    pictures = "".join(
        f"<p>{html.escape(row['case'])} ({row['phase'] or 'phase unknown'}): mean 3D Dice {row['dice']['mean']:.3f}; "
        f"each slice: truth left, prediction right</p>"
        + _img(_array_png(montage(*by_case[row["case"]], truth=by_case[row["case"]][0].label)), row["case"], "plot")
        for row in worst)
    return [*([qc_section(scored, by_case, max_volumes)] if "qc" in scored else []),
        ("Volumes", f"<p>{len(volumes)} volumes: Dice over each whole volume; HD95 in {unit} (the volume diagonal for a "
                    "structure in only one of prediction and truth). Slice Dice by position: each volume's slices in "
                    "thirds from base to apex.</p>" + summary + positions),
        ("Clinical indices", "<p>Per patient with ED and ES, predicted against the true masks (bias = predicted - "
                             "true).</p>" + agreement + notes + plots),
        ("Worst volumes", _legend() + pictures),
    ]


def qc_section(scored: dict[str, Any], by_case: dict[str, tuple[Any, np.ndarray]], max_volumes: int = 4
               ) -> tuple[str, str]:
    """"Cases to check first": every volume quality control flags (lowest predicted Dice first) with its predicted
    and true Dice and reasons, the first ``max_volumes`` with their montage (truth beside prediction)."""
    from cmrseg.inference.volume_prediction import montage
    from cmrseg.qc import CHECK

    stats = scored["qc"]
    flagged = sorted((r for r in scored["per_volume"] if r["qc_flag"] == CHECK), key=lambda r: r["qc_dice"])
    reference = any("qc_reference_dice" in r for r in scored["per_volume"])
    table = _table(["case", "predicted Dice", "true Dice", *(["Dice with the QC reference"] if reference else []),
                    "reasons"], [
        [html.escape(r["case"]), f"{r['qc_dice']:.3f}", _dice_cell(r["dice"]["mean"]),
         *([_number(r.get("qc_reference_dice", math.nan))] if reference else []), html.escape(r["qc_reasons"])]
        for r in flagged])
    pictures = "".join(f"<p>{html.escape(r['case'])}: predicted Dice {r['qc_dice']:.3f}, true {r['dice']['mean']:.3f}</p>"
                       + _img(_array_png(montage(*by_case[r["case"]], truth=by_case[r["case"]][0].label)), r["case"], "plot")
                       for r in flagged[:max_volumes])
    text = (f"<p>Quality control (docs/qc.md) flags {stats['flagged']} of {stats['n']} volumes 'check' (predicted mean "
            f"Dice below {stats['threshold']:.2f} or an anatomical rule broken); {stats['bad']} volumes have a true mean "
            f"Dice below {stats['bad_dice']:.2f}, {stats['flagged_bad']} of them flagged. Predicted against true mean "
            f"Dice: MAE {stats['mae']:.3f}, r {_number(stats['r'])}"
            f"{' (with the agreement of a QC reference model, --qc-reference)' if reference else ''}.</p>")
    return "Cases to check first", text + (table + _legend() + pictures if flagged else "<p>No volume flagged.</p>")


def run_report(run_dir: str | Path, data_dir: str | Path | None = None, max_images: int = 24,
               settings: PredictSettings | None = None, qc_reference: str | Path | None = None) -> str:
    """HTML of one run (a folder or an export zip): metrics per structure, per-image Dice worst first with
    overlays, curves, config; predicted with ``settings`` (default: the run's own); on volumes, quality control with
    the ``qc_reference`` model's agreement when given (:mod:`cmrseg.qc.reference`)."""
    from cmrseg import runs
    from cmrseg.evaluation.volume_scoring import is_volume_evaluation
    from cmrseg.plots import overlay
    from cmrseg.qc.reference import refuse_for_slices

    run_dir = runs.require_run_dir(run_dir)
    config = runs.read_run_config(run_dir)
    if not is_volume_evaluation(run_dir, data_dir):
        refuse_for_slices(data_dir or run_dir, qc_reference)
        evaluated = _evaluate_slices(run_dir, data_dir, settings)
    else:
        evaluated = _evaluate_volumes(run_dir, data_dir, settings, qc_reference)
    summary, samples, preds, source = evaluated.summary, evaluated.samples, evaluated.preds, evaluated.source
    columns = [*STRUCTURES, "mean"]
    metrics = _table(["metric", *columns], [
        ["Dice", *(_dice_cell(summary["dice"][c]) for c in columns)],
        ["HD95 (px)", *(_number(summary["hd95"][c], 2) for c in columns)],
        *([label, *(str(summary[key][c]) for c in STRUCTURES), ""]
          for key, label in (("misses", "misses"), ("false_detections", "false detections"))),
    ])
    by_id = {s.id: (s, p) for s, p in zip(samples, preds, strict=True)}
    ranked = sorted(summary["per_image"], key=lambda row: row["dice"]["mean"])
    rows = []
    for rank, row in enumerate(ranked, start=1):
        sample, pred = by_id[row["id"]]
        pictures = ([_img(_array_png(pic), f"{row['id']} {kind}", "slice") for kind, pic in
                     (("image", sample.slice_image), ("truth", overlay(sample.slice_image, sample.mask)),
                      ("prediction", overlay(sample.slice_image, pred)))]
                    if rank <= max_images else ["", "", ""])
        rows.append([str(rank), row["id"], *(_dice_cell(row["dice"][c]) for c in columns), _number(row["hd95"]["mean"], 2),
                     *(f"<td>{picture}</td>" for picture in pictures)])
    per_image = _table(["#", "image id", *(f"Dice {c}" for c in columns), "HD95 mean", "image", "truth", "prediction"], rows, 2)
    history = runs.read_history(run_dir)
    validated = [row for row in history if math.isfinite(row.get("dice_mean", math.nan))]
    best = max(validated, key=lambda r: r["dice_mean"]) if validated else None
    best_text = (f"; best validation mean Dice {best['dice_mean']:.3f} at epoch {int(best['epoch'])}" if best
                 else "; no validation split" if history else "")
    curves = _img(_curve_png(history), "loss and Dice curves", "plot") if history else "<p>No history.csv yet.</p>"
    shown = min(max_images, len(ranked))
    sections = [
        ("Metrics", f"<p>Evaluated on {html.escape(source)} with best.pt"
                    f"{_tta_text(summary)}{_weights_text(summary.get('class_weights'))}"
                    f"{' and largest-component clean-up' if summary['postprocess'] else ''}. "
                    "Dice is per image then averaged; HD95 in pixels, the image diagonal for a structure in only one of "
                    "prediction and truth. Misses: images where a structure of the truth was not predicted; false "
                    "detections: predicted but not in the truth.</p>" + metrics),
        *(volume_sections(evaluated.volumes, evaluated.masks, qc=evaluated.qc) if evaluated.volumes else []),
        ("Per-image Dice, worst first", f"<p>Overlays for the {shown} worst of {len(ranked)} images.</p>{_legend()}{per_image}"),
        ("Training curves", curves),
        ("Config", _pre_json(config.model_dump(mode="json"))),
    ]
    subtitle = f"{run_dir.resolve()} - {config.model_info.name}, {len(history)}/{config.epochs} epochs{best_text}"
    return _page(f"cmrseg run report: {run_dir.resolve().name}", subtitle, sections)


def sweep_report(sweep_dir: str | Path) -> str:
    """HTML of a sweep: the comparison table (best choice in bold), loss curves and best-score bars."""
    from cmrseg.workflows import sweep

    sweep_dir = Path(sweep_dir)
    spec = json.loads((sweep_dir / sweep.SWEEP_FILE).read_text())
    missing = [name for name in (sweep.TABLE_FILE, sweep.LOSS_PLOT, sweep.SCORE_PLOT) if not (sweep_dir / name).is_file()]
    if missing:
        raise CmrsegError(f"{sweep_dir}: no {missing[0]} yet; run the sweep first")
    table = sweep.read_table(sweep_dir / sweep.TABLE_FILE)
    scores = [float(row["dice_mean"]) if row.get("dice_mean") else -1.0 for row in table]
    best = scores.index(max(scores)) if table and max(scores) >= 0 else -1
    rows = [[_dice_cell(float(row[key])) if key in sweep.SCORE_COLUMNS and row[key] else row[key] for key in SWEEP_COLUMNS]
            for row in table]
    grid = "".join(f"<li><code>{html.escape(key)}</code>: {html.escape(', '.join(sweep.value_text(v) for v in values))}</li>"
                   for key, values in spec["grid"].items())
    sections = [
        ("Choices", f"<ul>{grid}</ul><p>Dice columns: validation Dice at the epoch with the best mean Dice "
                    "(the run's best.pt); losses of the last epoch; minutes of training.</p>"
                    + _table(list(SWEEP_COLUMNS.values()), rows, 2, ["best" if i == best else "" for i in range(len(rows))])),
        ("Loss curves", _img((sweep_dir / sweep.LOSS_PLOT).read_bytes(), "loss curves per choice", "plot")),
        ("Best validation Dice per structure", _img((sweep_dir / sweep.SCORE_PLOT).read_bytes(), "best Dice per choice", "plot")),
        ("Base config", f"<p>{html.escape(spec['base_config'])}</p>" + _pre_json(spec["config"])),
    ]
    subtitle = f"{sweep_dir.resolve()} - {len(table)} choices"
    return _page(f"cmrseg sweep report: {sweep_dir.resolve().name}", subtitle, sections)


def write_report(target: str | Path, out: str | Path, data_dir: str | Path | None = None, max_images: int = 24,
                 settings: PredictSettings | None = None, qc_reference: str | Path | None = None) -> Path:
    """Write the report of a run or sweep folder (or an export zip) ``target`` to ``out`` atomically; returns ``out``.
    ``settings`` say how a run predicts (default: its own), ``qc_reference`` which QC reference model checks its
    volumes (:func:`run_report`)."""
    from cmrseg import runs
    from cmrseg.workflows import sweep
    from cmrseg.io.atomic import write_text_atomic

    target = Path(target)
    inputs = [target / name for name in (*runs.RUN_FILES, sweep.SWEEP_FILE, sweep.TABLE_FILE, sweep.RUNS_DIR)]
    inputs += [target] if target.is_file() else []
    check_output_file(out, inputs=inputs + ([data_dir] if data_dir is not None else []))
    if (target / sweep.SWEEP_FILE).is_file():
        if data_dir is not None or qc_reference is not None:
            raise CmrsegError(f"{'data' if data_dir is not None else 'qc_reference'} applies to a run folder, not a sweep",
                              key="data" if data_dir is not None else "qc_reference")
        page = sweep_report(target)
    elif (target / runs.CONFIG_FILE).is_file() or target.is_file():
        page = run_report(target, data_dir, max_images, settings, qc_reference)
    elif target.is_dir():
        raise CmrsegError(f"{target}: neither a run folder ({runs.CONFIG_FILE}) nor a sweep folder ({sweep.SWEEP_FILE})")
    else:
        raise CmrsegError(f"{target}: folder not found")
    write_text_atomic(out, page)
    return Path(out)

