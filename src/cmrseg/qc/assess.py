"""From signals to a verdict: ``qc_dice``, ``qc_flag`` (``pass`` or ``check``) and ``qc_reasons`` per volume, and
the patient's flag.

A volume is ``check`` when its predicted mean Dice is below the threshold, one structure's predicted Dice is below
:data:`STRUCTURE_MIN`, or any rule fails. Rules of one volume: every
structure present, the LV cavity enclosed by myocardium (:data:`LV_ENCLOSURE_MIN` of its border), the RV beside
the heart, no slice gap. Rules of a patient (ED and ES), which flag both volumes: ED volume above ES for each
ventricle (else "phases swapped?"), EF at most :data:`EF_MAX` %, when the spacing is known end-diastolic and
end-systolic volumes within :data:`VOLUME_ML`, and with a QC reference model an LV EF within
:data:`REFERENCE_EF_GAP` points of the reference's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cmrseg.qc.model import DEFAULT_MODEL, DEFAULT_REFERENCE_MODEL, TARGETS, QcModel

DEFAULT_THRESHOLD = 0.80
"""Volumes whose predicted mean Dice is below this are flagged ``check`` (``--qc-threshold``). On the native benchmark
pool (BENCHMARKS.md) 0.80 caught 82 % of the bad volumes (mean Dice < 0.80 or LV EF off by > 10 points) at 90 %
specificity, 89 % of those bad by Dice at 89 %; 0.84 caught 90 % at 70 %."""
STRUCTURE_MIN = 0.60
"""A volume whose predicted Dice of one structure (RV, Myo or LV) is below this is flagged ``check`` whatever its
mean: one structure drawn badly makes its indices (an RV EF, an LV mass) untrustworthy."""
LV_ENCLOSURE_MIN = 0.75
"""Share of the LV cavity's border that must touch the myocardium: at least 0.98 in every acdc96 label volume, at
least 0.80 in every good prediction of the benchmark pool (BENCHMARKS.md), median 0.47 in its bad ones."""
RV_APART_MIN_SLICES = 2
"""The RV must lie away from the heart on at least this many slices to flag: a single stray RV blob (apex, base) is
as common in good predictions of the benchmark pool as in bad ones."""
EF_MAX = 90.0
"""Ejection fractions above this (%) are not physiological."""
REFERENCE_EF_GAP = 10.0
"""With a QC reference model (:mod:`cmrseg.qc.reference`), a patient whose LV EF differs from the EF of the reference's
own segmentation by more than this (points) is flagged: the issue's line between a usable and a wrong EF, set before
measuring, not read off the benchmark pool. A wrong EF from a good-looking segmentation is what the Dice estimate
misses most (BENCHMARKS.md, Quality control)."""
VOLUME_ML = (10.0, 500.0)
"""Plausible range (mL) of a ventricle's EDV when the voxel spacing is known (its ESV: at most the upper bound)."""
PASS, CHECK = "pass", "check"


def check_threshold(threshold: float | None) -> float:
    """``--qc-threshold`` (None: :data:`DEFAULT_THRESHOLD`), refused in one line outside 0-1."""
    from cmrseg.errors import CmrsegError

    value = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if not 0.0 <= value <= 1.0:
        raise CmrsegError(f"qc_threshold {threshold}: expected a Dice between 0 and 1", key="qc_threshold")
    return value


def _slices(zs: Sequence[int]) -> str:
    return f"slice{'s' if len(zs) > 1 else ''} {', '.join(str(z) for z in zs)}"


def volume_reasons(signals: Mapping[str, Any]) -> list[str]:
    """The volume rules that fail, each as words."""
    reasons = [f"{name} missing" for name in signals["missing"]]
    if "LV" not in signals["missing"] and signals["lv_enclosure"] < LV_ENCLOSURE_MIN:
        reasons.append(f"LV not enclosed by myocardium ({100 * signals['lv_enclosure']:.0f} % of its border touches Myo)")
    if len(signals["rv_apart"]) >= RV_APART_MIN_SLICES:
        reasons.append(f"RV away from the LV on {_slices(signals['rv_apart'])}")
    reasons += [f"{name} absent on {_slices(zs)} between slices that have it" for name, zs in signals["gaps"].items()]
    return reasons


def patient_reasons(row: Mapping[str, Any]) -> list[str]:
    """The physiology rules that fail for one patient's indices row (:func:`cmrseg.metrics.clinical.patient_row`)."""
    reasons = []
    for side in ("LV", "RV"):
        edv, esv = row.get(f"{side}_EDV_voxels", math.nan), row.get(f"{side}_ESV_voxels", math.nan)
        ef = row.get(f"{side}_EF_pct", math.nan)
        if edv == edv and esv == esv and edv < esv:
            reasons.append(f"{side} ED volume below ES (EF {ef:.0f} %, negative stroke volume: phases swapped?)")
        elif ef == ef and ef > EF_MAX:
            reasons.append(f"{side} EF {ef:.0f} % above {EF_MAX:.0f} %")
        for phase, low in (("EDV", VOLUME_ML[0]), ("ESV", 0.0)):
            ml = row.get(f"{side}_{phase}_ml", math.nan)
            if ml == ml and not low <= ml <= VOLUME_ML[1]:
                reasons.append(f"{side} {phase} {ml:,.0f} mL outside {low:.0f}-{VOLUME_ML[1]:.0f} mL")
    return reasons


def reference_reasons(phases: Sequence[Any], signals: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Per patient, the LV EF gap to the QC reference model (:data:`REFERENCE_EF_GAP`), from the ``reference_voxels``
    of both phases' signals; patients without them have none."""
    import dataclasses

    from cmrseg.metrics.clinical import indices_table

    theirs = [dataclasses.replace(p, counts=signals[p.case]["reference_voxels"]) for p in phases
              if "reference_voxels" in signals.get(p.case, {})]
    mine = {row["patient"]: row for row in indices_table(phases)}
    reasons: dict[str, list[str]] = {}
    for row in indices_table(theirs):
        ef, reference = mine[row["patient"]]["LV_EF_pct"], row["LV_EF_pct"]
        if ef == ef and reference == reference and abs(ef - reference) > REFERENCE_EF_GAP:
            reasons[row["patient"]] = [f"LV EF {ef:.0f} % where the reference model measures {reference:.0f} %"]
    return reasons


def estimate_dice(model: QcModel, signals: Mapping[str, Any]) -> dict[str, float]:
    """``qc_dice`` and, when ``model`` predicts them, ``qc_dice_RV``, ``qc_dice_Myo`` and ``qc_dice_LV`` of one
    volume's signals."""
    x = model.inputs(signals)[None]
    per = {f"qc_dice_{name}": float(value[0]) for name, value in model.predict_structures(x).items()}
    return {"qc_dice": float(model.predict(x)[0]), **per}


CASE_COLUMNS = ("qc_dice", "qc_flag", "qc_reasons", "qc_dice_RV", "qc_dice_Myo", "qc_dice_LV", "qc_reference_dice")
"""Quality-control columns of a predicted case's row (``cases.csv``); a structure's column is empty when the QC
model predicts the mean only, ``qc_reference_dice`` (the mean Dice of the prediction with the ``--qc-reference``
model's) without a reference."""


def case_cells(entry: Mapping[str, Any]) -> list[str]:
    """The :data:`CASE_COLUMNS` of one case's :class:`QcResult` entry, as text."""
    return [f"{entry[key]:.3f}" if isinstance(entry.get(key), float) else str(entry.get(key, "")) for key in CASE_COLUMNS]


def slices_manifest(result: QcResult) -> str:
    """``cases.csv`` of predicted PNG slices: each image's id and :data:`CASE_COLUMNS`."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case", *CASE_COLUMNS])
    for case, entry in result.cases.items():
        writer.writerow([case, *case_cells(entry)])
    return buffer.getvalue()


def dice_reasons(estimate: Mapping[str, float], threshold: float) -> list[str]:
    """The predicted-Dice reasons of :func:`estimate_dice`'s ``estimate``: the mean below ``threshold`` (with each
    structure's estimate), and each structure below :data:`STRUCTURE_MIN`."""
    structures = {key.removeprefix("qc_dice_"): value for key, value in estimate.items() if key != "qc_dice"}
    reasons = []
    if estimate["qc_dice"] < threshold:
        detail = f" ({', '.join(f'{name} {value:.2f}' for name, value in structures.items())})" if structures else ""
        reasons.append(f"predicted Dice {estimate['qc_dice']:.2f} below {threshold:.2f}{detail}")
    reasons += [f"predicted {name} Dice {value:.2f} below {STRUCTURE_MIN:.2f}" for name, value in structures.items()
                if value < STRUCTURE_MIN]
    return reasons


@dataclass
class QcResult:
    """Per case ``{"qc_dice", "qc_flag", "qc_reasons"}`` (and ``qc_dice_RV``, ``qc_dice_Myo``, ``qc_dice_LV`` when
    the model predicts them) and per patient ``{"qc_flag", "qc_reasons"}`` (reasons ``;``-separated words)."""

    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    patients: dict[str, dict[str, Any]] = field(default_factory=dict)
    threshold: float = DEFAULT_THRESHOLD
    calibrated: bool = False


def merge(results: Sequence[QcResult]) -> QcResult | None:
    """One result of several (e.g. the folds of a cross-validation: disjoint patients); None for none."""
    if not results:
        return None
    merged = QcResult(threshold=results[0].threshold, calibrated=all(r.calibrated for r in results))
    for result in results:
        merged.cases.update(result.cases)
        merged.patients.update(result.patients)
    return merged


def assess(signals: Mapping[str, Mapping[str, Any]], phases: Sequence[Any], model: QcModel | None = None,
           threshold: float = DEFAULT_THRESHOLD) -> QcResult:
    """QC of the volumes whose ``signals`` are given by case, with their predicted ``phases``
    (:class:`cmrseg.metrics.clinical.PhaseLabel`, for the patient rules); ``model`` None uses :data:`DEFAULT_MODEL`
    (the result is ``calibrated`` unless a default model was used)."""
    from cmrseg.metrics.clinical import indices_table

    chosen = model or DEFAULT_MODEL
    result = QcResult(threshold=threshold, calibrated=all(chosen is not default for default in (DEFAULT_MODEL, DEFAULT_REFERENCE_MODEL)))
    rows = indices_table(phases)
    by_case = {p.case: p.patient for p in phases}
    gaps = reference_reasons(phases, signals)
    patient_rules = {row["patient"]: patient_reasons(row) + gaps.get(row["patient"], []) for row in rows}
    own: dict[str, list[str]] = {}
    for case, sig in signals.items():
        estimate = estimate_dice(chosen, sig)
        own[case] = dice_reasons(estimate, threshold) + volume_reasons(sig)
        reasons = own[case] + patient_rules.get(by_case.get(case, ""), [])
        reference = float(sig.get("reference_dice", math.nan))
        result.cases[case] = {**estimate, "qc_flag": CHECK if reasons else PASS, "qc_reasons": "; ".join(reasons),
                              **({"qc_reference_dice": reference} if reference == reference else {})}
    for row in rows:
        cases = [p.case for p in phases if p.patient == row["patient"] and own.get(p.case)]
        reasons = patient_rules[row["patient"]] + [f"{case} to check ({own[case][0]})" for case in cases]
        result.patients[row["patient"]] = {"qc_flag": CHECK if reasons else PASS, "qc_reasons": "; ".join(reasons)}
    return result


BAD_DICE = 0.80
"""A volume whose true mean Dice is below this counts as bad when QC is measured against the truth."""


def qc_against_truth(rows: Sequence[Mapping[str, Any]], threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """How QC did on scored volumes (rows with ``dice`` and ``qc_dice``/``qc_flag``): MAE and correlation of the
    predicted with the true mean Dice, volumes flagged, bad volumes (true mean Dice below :data:`BAD_DICE`) and how
    many of each the flag caught."""
    from cmrseg.qc.model import agreement_stats

    true = np.array([row["dice"]["mean"] for row in rows], dtype=float)
    predicted = np.array([row["qc_dice"] for row in rows], dtype=float)
    flagged = np.array([row["qc_flag"] == CHECK for row in rows])
    bad = true < BAD_DICE
    structures = {name: float(np.mean([abs(row[f"qc_dice_{name}"] - row["dice"][name]) for row in rows]))
                  for name in TARGETS if rows and all(f"qc_dice_{name}" in row for row in rows)}
    return {**agreement_stats(predicted, true), "threshold": threshold, "flagged": int(flagged.sum()),
            "bad": int(bad.sum()), "flagged_bad": int((flagged & bad).sum()), "bad_dice": BAD_DICE,
            **({"mae_structures": structures} if structures else {})}


def format_qc_against_truth(stats: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], shown: int = 10) -> str:
    """Plain text: the QC summary and the flagged volumes (lowest predicted Dice first) with their true Dice."""
    lines = [f"quality control (docs/qc.md): predicted vs true mean Dice per volume: MAE {stats['mae']:.3f}, "
             f"r {stats['r']:.3f}; {stats['flagged']} of {stats['n']} volumes flagged 'check' "
             f"(threshold {stats['threshold']:.2f}); {stats['bad']} have true mean Dice < {stats['bad_dice']:.2f}, "
             f"{stats['flagged_bad']} of them flagged"
             + (f"; MAE per structure {', '.join(f'{k} {v:.3f}' for k, v in stats['mae_structures'].items())}"
                if stats.get("mae_structures") else "")]
    flagged = sorted((row for row in rows if row["qc_flag"] == CHECK), key=lambda row: row["qc_dice"])
    lines += [f"  check {row['case']}: qc_dice {row['qc_dice']:.3f}, true {row['dice']['mean']:.3f}: {row['qc_reasons']}"
              for row in flagged[:shown]]
    if len(flagged) > shown:
        lines.append(f"  ... and {len(flagged) - shown} more")
    return "\n".join(lines)


def anatomy_warning(case: str, signals: Mapping[str, Any]) -> str | None:
    """One line for a volume whose labels are no heart in short axis: no LV, no myocardium, or an LV cavity that the
    myocardium does not enclose. Input a model was not made for (a long-axis view, another organ) gives such labels."""
    missing = [name for name in ("LV", "Myo") if name in signals["missing"]]
    if missing:
        what = "no " + " and no ".join(missing)
    elif signals["lv_enclosure"] < LV_ENCLOSURE_MIN:
        what = f"an LV cavity that the myocardium does not enclose ({100 * signals['lv_enclosure']:.0f} % of its border)"
    else:
        return None
    return (f"{case}: the labels show {what}, which a short-axis view of a heart does not give; is it a short-axis "
            "cardiac volume? Check it before using its numbers")
