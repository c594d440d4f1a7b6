"""Clinical indices per patient from ED and ES label volumes, and their agreement with the truth.

For a patient with an end-diastolic (ED) and an end-systolic (ES) label volume:

- LV and RV end-diastolic and end-systolic volume, EDV and ESV (mL) = voxel count x voxel volume;
- stroke volume SV = EDV - ESV (mL) and ejection fraction EF = 100 x SV / EDV (%);
- LV myocardial mass at ED (g) = myocardium volume at ED (mL) x 1.05 g/mL.

Voxel counts are always given too (``*_voxels`` columns). Without a known voxel spacing the mL and g columns
stay empty and the ``note`` says so; EF, a ratio of counts, is still exact. A patient without ED or ES gets a
row with a note and no indices. Agreement of predicted with true indices: bias (mean of predicted - true),
SD of the difference, mean absolute error and Pearson correlation, per index, plus Bland-Altman and scatter plots.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg.data.spacing import spacing_text
from cmrseg.errors import CmrsegError
from cmrseg.io.atomic import write_text_atomic

MYOCARDIAL_DENSITY = 1.05
"""g/mL, the density used by ACDC and most CMR software for LV mass."""

LABELS = {"RV": 1, "Myo": 2, "LV": 3}
INDEX_COLUMNS = ["LV_EDV_ml", "LV_ESV_ml", "LV_SV_ml", "LV_EF_pct", "RV_EDV_ml", "RV_ESV_ml", "RV_SV_ml", "RV_EF_pct",
                 "LV_mass_g", "LV_EDV_voxels", "LV_ESV_voxels", "RV_EDV_voxels", "RV_ESV_voxels", "Myo_ED_voxels"]
TABLE_COLUMNS = ["patient", "group", "ed_case", "es_case", "spacing_mm", *INDEX_COLUMNS, "note"]
QC_COLUMNS = ["qc_flag", "qc_reasons"]
"""The patient's quality control (:mod:`cmrseg.qc`), after the indices when known."""
PLOTTED = (("LV_EF_pct", "LV EF (%)"), ("RV_EF_pct", "RV EF (%)"), ("LV_EDV_ml", "LV EDV (mL)"),
           ("LV_EDV_voxels", "LV EDV (voxels)"), ("LV_mass_g", "LV mass (g)"), ("Myo_ED_voxels", "LV myocardium at ED (voxels)"))


@dataclass
class PhaseLabel:
    """One labeled phase of a patient: voxel counts per structure and the voxel spacing (mm) if known."""

    patient: str
    phase: str | None
    case: str
    counts: dict[str, int]
    spacing: tuple[float, float, float] | None
    group: str = ""
    shape: tuple[int, ...] | None = None

    @classmethod
    def from_label(cls, patient: str, phase: str | None, case: str, label: np.ndarray,
                   spacing: tuple[float, float, float] | None, group: str = "") -> PhaseLabel:
        counts = {name: int((label == value).sum()) for name, value in LABELS.items()}
        return cls(patient, phase, case, counts, spacing, group, tuple(label.shape))

    @classmethod
    def from_volume(cls, volume: Any, label: np.ndarray) -> PhaseLabel:
        """``label`` counted for the patient, phase, case, spacing and group of ``volume`` (a read volume
        or label volume of :mod:`cmrseg.data.label_volumes`)."""
        return cls.from_label(volume.patient, volume.phase, volume.case, label, volume.spacing, volume.group)

    @property
    def voxel_ml(self) -> float | None:
        return None if self.spacing is None else float(np.prod(self.spacing)) / 1000.0


def _ejection_fraction(edv: float, esv: float) -> float:
    return 100.0 * (edv - esv) / edv if edv > 0 else math.nan


def patient_row(patient: str, phases: Sequence[PhaseLabel]) -> dict[str, Any]:
    """The table row of one patient from its phases (ED and ES needed for indices)."""
    by_phase = {p.phase: p for p in phases if p.phase in ("ED", "ES")}
    ed, es = by_phase.get("ED"), by_phase.get("ES")
    row: dict[str, Any] = {"patient": patient, "group": next((p.group for p in phases if p.group), ""),
                           "ed_case": ed.case if ed else "", "es_case": es.case if es else "", "note": ""}
    row.update({column: math.nan for column in INDEX_COLUMNS})
    if ed is None or es is None:
        missing = " and ".join(name for name, p in (("ED", ed), ("ES", es)) if p is None)
        row.update(spacing_mm=spacing_text((ed or es).spacing if (ed or es) else None),
                   note=f"no {missing} volume: indices need both phases")
        return row
    row["spacing_mm"] = spacing_text(ed.spacing)
    for side in ("LV", "RV"):
        edv, esv = ed.counts[side], es.counts[side]
        row.update({f"{side}_EDV_voxels": edv, f"{side}_ESV_voxels": esv, f"{side}_EF_pct": _ejection_fraction(edv, esv)})
    row["Myo_ED_voxels"] = ed.counts["Myo"]
    if ed.voxel_ml is None or es.voxel_ml is None:
        row["note"] = "spacing unknown: volumes in voxels only, no mL or mass (EF is exact)"
        return row
    if not np.allclose(ed.spacing, es.spacing, rtol=1e-3):
        row["note"] = f"ED and ES spacings differ ({spacing_text(ed.spacing)} vs {spacing_text(es.spacing)})"
    for side in ("LV", "RV"):
        edv, esv = ed.counts[side] * ed.voxel_ml, es.counts[side] * es.voxel_ml
        row.update({f"{side}_EDV_ml": edv, f"{side}_ESV_ml": esv, f"{side}_SV_ml": edv - esv})
    row["LV_mass_g"] = ed.counts["Myo"] * ed.voxel_ml * MYOCARDIAL_DENSITY
    return row


def indices_table(phases: Iterable[PhaseLabel]) -> list[dict[str, Any]]:
    """One row per patient (in first-seen order) from all labeled phases."""
    by_patient: dict[str, list[PhaseLabel]] = {}
    for phase in phases:
        by_patient.setdefault(phase.patient, []).append(phase)
    return [patient_row(patient, items) for patient, items in by_patient.items()]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def paired_values(predicted: Sequence[dict[str, Any]], truth: Sequence[dict[str, Any]], column: str
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Predicted and true values of ``column`` for the patients both tables give a number for."""
    true_by_patient = {row["patient"]: row for row in truth}
    pairs = [(row.get(column, math.nan), true_by_patient[row["patient"]].get(column, math.nan), row["patient"])
             for row in predicted if row["patient"] in true_by_patient]
    kept = [(p, t, name) for p, t, name in pairs if not (math.isnan(float(p)) or math.isnan(float(t)))]
    return (np.array([p for p, _, _ in kept], dtype=float), np.array([t for _, t, _ in kept], dtype=float),
            [name for _, _, name in kept])


def agreement(predicted: Sequence[dict[str, Any]], truth: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per index with at least two paired patients: n, bias, SD of the difference, MAE and Pearson r."""
    result = {}
    for column in INDEX_COLUMNS:
        pred, true, _ = paired_values(predicted, truth, column)
        if len(pred) < 2:
            continue
        diff = pred - true
        result[column] = {"n": int(len(diff)), "bias": float(diff.mean()), "sd": float(diff.std(ddof=1)),
                          "mae": float(np.abs(diff).mean()), "r": _pearson(pred, true)}
    return result


def format_agreement(stats: dict[str, dict[str, float]]) -> str:
    """Plain-text agreement table, one line per index."""
    lines = [f"{'index':<16}{'n':>5}{'bias':>10}{'SD':>10}{'MAE':>10}{'r':>8}"]
    for column, s in stats.items():
        lines.append(f"{column:<16}{s['n']:>5}{s['bias']:>10.2f}{s['sd']:>10.2f}{s['mae']:>10.2f}{s['r']:>8.3f}")
    return "\n".join(lines)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return value


def write_indices_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """The per-patient table as CSV (empty cells where an index is not defined), written atomically; with the
    patient's quality control (:data:`QC_COLUMNS`) when the rows carry it (:func:`with_patient_qc`)."""
    columns = TABLE_COLUMNS + [c for c in QC_COLUMNS if any(c in row for row in rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({key: _cell(row.get(key, "")) for key in columns} for row in rows)
    write_text_atomic(path, buffer.getvalue())


def with_patient_qc(rows: Sequence[dict[str, Any]], checked: Any) -> list[dict[str, Any]]:
    """``rows`` with each patient's ``qc_flag`` and ``qc_reasons`` from a :class:`cmrseg.qc.QcResult`."""
    return [{**row, **checked.patients.get(row["patient"], {})} for row in rows]


def plotted_indices(stats: dict[str, dict[str, float]]) -> list[tuple[str, str]]:
    """The indices that plots show: EFs, then LV EDV and mass in mL/g when known, else in voxels."""
    chosen = [(c, t) for c, t in PLOTTED if c in stats]
    has_ml = any(c.endswith("_ml") or c.endswith("_g") for c, _ in chosen)
    return [(c, t) for c, t in chosen if not (has_ml and c.endswith("_voxels"))]


def plot_agreement(predicted: Sequence[dict[str, Any]], truth: Sequence[dict[str, Any]], scatter_path: str | Path,
                   bland_altman_path: str | Path) -> list[Path]:
    """Scatter (predicted vs true, identity line) and Bland-Altman (difference vs mean, bias and 95% limits) PNGs."""
    from cmrseg.plots import plt, save_figure

    chosen = plotted_indices(agreement(predicted, truth))
    if not chosen:
        return []
    written = []
    for kind, path in (("scatter", scatter_path), ("bland_altman", bland_altman_path)):
        fig, axes = plt.subplots(1, len(chosen), figsize=(3.6 * len(chosen), 3.5), squeeze=False)
        for ax, (column, title) in zip(axes[0], chosen, strict=True):
            pred, true, _ = paired_values(predicted, truth, column)
            if kind == "scatter":
                _scatter(ax, pred, true, title)
            else:
                _bland_altman(ax, pred, true, title)
        fig.tight_layout()
        save_figure(fig, path)
        written.append(Path(path))
    return written


def _scatter(ax: Any, pred: np.ndarray, true: np.ndarray, title: str) -> None:
    low, high = float(min(pred.min(), true.min())), float(max(pred.max(), true.max()))
    ax.plot([low, high], [low, high], color="gray", linewidth=1, linestyle="--")
    ax.scatter(true, pred, s=14, alpha=0.8)
    ax.set(xlabel=f"true {title}", ylabel=f"predicted {title}", title=f"{title}: r = {_pearson(pred, true):.3f}")


def _bland_altman(ax: Any, pred: np.ndarray, true: np.ndarray, title: str) -> None:
    diff, mean = pred - true, (pred + true) / 2
    bias, sd = float(diff.mean()), float(diff.std(ddof=1))
    ax.scatter(mean, diff, s=14, alpha=0.8)
    for level, style in ((bias, "-"), (bias + 1.96 * sd, "--"), (bias - 1.96 * sd, "--")):
        ax.axhline(level, color="gray", linewidth=1, linestyle=style)
    ax.set(xlabel=f"mean {title}", ylabel="predicted - true", title=f"bias {bias:+.2f}, SD {sd:.2f}")


def phases_of_folder(directory: str | Path, info_dir: str | Path | None = None) -> list[PhaseLabel]:
    """Labeled phases of a folder of label volumes (see :func:`cmrseg.data.label_volumes.load_label_folder`)."""
    from cmrseg.data.label_volumes import load_label_folder

    return [PhaseLabel.from_volume(v, v.label) for v in load_label_folder(directory, info_dir)]


def check_same_grids(predicted: Sequence[PhaseLabel], truth: Sequence[PhaseLabel], truth_dir: Any) -> None:
    """Refuse a true phase whose label grid (shape) differs from the predicted one of the same patient and phase:
    their indices would not be about the same images."""
    shapes = {(p.patient, p.phase): p for p in predicted}
    for true in truth:
        mine = shapes.get((true.patient, true.phase))
        if mine is not None and mine.shape != true.shape:
            raise CmrsegError(f"{truth_dir}: case {true.case} has shape {true.shape}, but the predicted {mine.case} "
                              f"has {mine.shape}; expected the truth of the same images")


def write_indices(
    masks_dir: str | Path,
    out_csv: str | Path,
    info_dir: str | Path | None = None,
    truth_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Per-patient indices of ``masks_dir`` into ``out_csv``; with ``truth_dir`` also the true indices
    (``OUT_true.csv``), their agreement (``OUT_agreement.json``) and the scatter and Bland-Altman plots
    (``OUT_scatter.png``, ``OUT_bland_altman.png``). Every output path is checked before any work (not a
    folder, writable, outside the inputs). Returns the rows, agreement and written paths."""
    from cmrseg.io.outputs import check_output_file
    from cmrseg.io.atomic import write_json_atomic

    out_csv = Path(out_csv)
    stem = out_csv.with_suffix("")
    true_csv, stats_json = Path(f"{stem}_true.csv"), Path(f"{stem}_agreement.json")
    plots = Path(f"{stem}_scatter.png"), Path(f"{stem}_bland_altman.png")
    inputs = [p for p in (masks_dir, truth_dir, info_dir) if p is not None]
    for path in [out_csv, *((true_csv, stats_json, *plots) if truth_dir is not None else ())]:
        check_output_file(path, inputs=inputs)
    phases = phases_of_folder(masks_dir, info_dir)
    true_phases = phases_of_folder(truth_dir, info_dir) if truth_dir is not None else []
    check_same_grids(phases, true_phases, truth_dir)
    rows, true_rows = indices_table(phases), indices_table(true_phases)
    written = [out_csv]
    stats: dict[str, dict[str, float]] = {}
    if truth_dir is not None:
        stats = agreement(rows, true_rows)
        write_indices_csv(true_rows, true_csv)
        write_json_atomic(stats_json, stats)
        written += [true_csv, stats_json, *plot_agreement(rows, true_rows, *plots)]
    write_indices_csv(rows, out_csv)
    return {"rows": rows, "true_rows": true_rows, "agreement": stats, "written": written}
