"""Signals of one predicted volume that say how far to trust it, measured from what prediction already computed.

- ``view_dice``: mean Dice of each flip-TTA view's argmax with the views' consensus, over RV, Myo and LV (from
  :func:`cmrseg.inference.tta.agreement_counts`), and ``view_dice_min`` its worst structure; NaN when the volume
  was predicted without TTA.
- proportions (:func:`proportions`): RV and myocardium against the LV, and the share of voxels in a structure.
- ``view_dice_RV``, ``view_dice_Myo``, ``view_dice_LV``: the same agreement per structure (NaN without TTA).
- ``member_dice``, ``member_dice_min`` and ``member_dice_<structure>``: the same agreement between an ensemble's
  members and the ensemble (:attr:`cmrseg.inference.ModelPredictor.member_agreement`); NaN for a single network.
- ``reference_dice``, ``reference_dice_min`` and ``reference_dice_<structure>``: Dice of the prediction with an
  independently trained reference model's segmentation (:mod:`cmrseg.qc.reference`; :func:`mask_agreement`), and
  ``reference_voxels``, the reference's voxels per structure (for its EF, :func:`cmrseg.qc.assess.reference_reasons`);
  NaN and absent without a reference.
- ``margin``: mean top-1 minus top-2 probability over the voxels predicted as a structure (1 = certain), and
  ``margin_RV``, ``margin_Myo``, ``margin_LV`` over each structure's voxels (0 where it is absent).
- ``relabelled``: the share of the voxels the probabilities' argmax puts in a structure that the label volume
  labels otherwise: what the 3D clean-up removed (stray blobs elsewhere in the field of view) or class weights moved.
- ``uncertain``: voxels whose margin is below :data:`UNCERTAIN_MARGIN`, as a share of the predicted structures'
  voxels (plus those uncertain ones): how much of the segmentation is a coin toss.
- anatomy (:func:`anatomy_signals`): structures missing, the share of the LV cavity's border that touches the
  myocardium, slices where the RV lies away from the heart, slices missing between slices that have a structure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from cmrseg.constants import STRUCTURES

UNCERTAIN_MARGIN = 0.5
"""A voxel whose top-1 and top-2 class probabilities are closer than this counts as uncertain."""
RV_REACH = 3
"""Pixels (in-plane) within which the RV must come to the myocardium or LV on a slice that has both."""
LABEL = {name: value for value, name in enumerate(STRUCTURES, start=1)}


def structure_agreement(counts: Sequence[np.ndarray] | None) -> list[float]:
    """Dice of the views (flips, or an ensemble's members) with their consensus for RV, Myo and LV, from the
    per-slice ``S x 2`` counts of :func:`cmrseg.inference.tta.agreement_counts` (a structure absent from every view
    counts 1); NaNs without them."""
    if not counts or any(c.size == 0 for c in counts):
        return [math.nan] * len(STRUCTURES)
    total = np.sum(np.stack(counts), axis=0)
    return [float(2 * overlap / area) if area > 0 else 1.0 for overlap, area in total]


def view_dice(counts: Sequence[np.ndarray] | None) -> float:
    """Mean over RV, Myo and LV of :func:`structure_agreement`; NaN without counts."""
    return float(np.mean(structure_agreement(counts)))


def proportions(mask: np.ndarray) -> dict[str, float]:
    """``rv_lv`` and ``myo_lv``: log ratios of the RV's and the myocardium's voxels to the LV's (+1 each), and
    ``foreground``: the share of the volume's voxels in a structure. Untrained or failing models get these wrong."""
    count = {name: float((mask == value).sum()) for name, value in LABEL.items()}
    return {"rv_lv": math.log((count["RV"] + 1) / (count["LV"] + 1)),
            "myo_lv": math.log((count["Myo"] + 1) / (count["LV"] + 1)), "foreground": float((mask > 0).mean())}


def probability_signals(probs: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """``margin``, ``margin_<structure>`` and ``uncertain`` (module doc) of ``C x H x W x Z`` probabilities and
    their label volume."""
    top = np.sort(probs, axis=0)[-2:]
    margin = top[1] - top[0]
    structures = mask > 0
    uncertain = margin < UNCERTAIN_MARGIN
    region = structures | uncertain
    per_structure = {f"margin_{name}": float(margin[mask == value].mean()) if (mask == value).any() else 0.0
                     for name, value in LABEL.items()}
    raw = probs.argmax(axis=0)
    drawn = raw > 0
    return {"margin": float(margin[structures].mean()) if structures.any() else 0.0,
            "uncertain": float(uncertain.sum() / region.sum()) if region.any() else 0.0, **per_structure,
            "relabelled": float((drawn & (raw != mask)).sum() / drawn.sum()) if drawn.any() else 0.0}


def _slices_with(region: np.ndarray) -> np.ndarray:
    return np.flatnonzero(region.any(axis=(0, 1)))


def lv_enclosure(mask: np.ndarray) -> float:
    """Share of the LV cavity's border pixels (in-plane, 4-neighbours) that touch the myocardium; 1 without LV."""
    lv = mask == LABEL["LV"]
    if not lv.any():
        return 1.0
    plane = ndimage.generate_binary_structure(2, 1)[..., None]
    border = lv & ~ndimage.binary_erosion(lv, plane, border_value=0)
    near_myo = ndimage.binary_dilation(mask == LABEL["Myo"], plane)
    return float((border & near_myo).sum() / border.sum())


def rv_apart_slices(mask: np.ndarray) -> list[int]:
    """Slices with both RV and LV where no RV pixel comes within :data:`RV_REACH` pixels of the Myo or LV."""
    heart = (mask == LABEL["Myo"]) | (mask == LABEL["LV"])
    rv = mask == LABEL["RV"]
    near = ndimage.binary_dilation(heart, ndimage.generate_binary_structure(2, 2)[..., None], iterations=RV_REACH)
    both = rv.any(axis=(0, 1)) & (mask == LABEL["LV"]).any(axis=(0, 1))
    return [int(z) for z in np.flatnonzero(both & ~(rv & near).any(axis=(0, 1)))]


def gap_slices(mask: np.ndarray) -> dict[str, list[int]]:
    """Per structure, the slices without it that lie between slices with it (a hole through the stack)."""
    gaps = {}
    for name, value in LABEL.items():
        present = _slices_with(mask == value)
        if len(present):
            missing = sorted(set(range(int(present[0]), int(present[-1]) + 1)) - set(present.tolist()))
            if missing:
                gaps[name] = missing
    return gaps


def anatomy_signals(mask: np.ndarray) -> dict[str, Any]:
    """``missing`` (structures absent from the volume), ``lv_enclosure``, ``rv_apart`` (slices), ``gaps``
    (structure -> slices) of an ``H x W x Z`` label volume."""
    return {"missing": [name for name, value in LABEL.items() if not (mask == value).any()],
            "lv_enclosure": lv_enclosure(mask), "rv_apart": rv_apart_slices(mask), "gaps": gap_slices(mask)}


def _agreement_signals(prefix: str, counts: Sequence[np.ndarray] | None) -> dict[str, float]:
    """``PREFIX``, ``PREFIX_min`` and ``PREFIX_<structure>`` of :func:`structure_agreement` of ``counts``."""
    per = structure_agreement(counts)
    return {prefix: float(np.mean(per)), f"{prefix}_min": float(np.min(per)),
            **{f"{prefix}_{name}": value for name, value in zip(STRUCTURES, per, strict=True)}}


def mask_agreement(mask: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``S x 2`` counts of RV, Myo and LV between two label volumes of the same grid: voxels in the structure in
    both, and the two areas summed (``2 * first / second`` is their Dice), as :func:`structure_agreement` reads them."""
    if mask.shape != other.shape:
        raise ValueError(f"label volumes of shapes {mask.shape} and {other.shape}: expected the same grid")
    counts = []
    for value in LABEL.values():
        mine, theirs = mask == value, other == value
        counts.append([float((mine & theirs).sum()), float(mine.sum() + theirs.sum())])
    return np.array(counts)


def volume_signals(probs: np.ndarray | None, mask: np.ndarray, agreement: Sequence[np.ndarray] | None = None,
                   members: Sequence[np.ndarray] | None = None, reference: np.ndarray | None = None) -> dict[str, Any]:
    """Every signal of one predicted volume: probability ones (NaN without ``probs``, e.g. a label volume read
    back), flip-view agreement (NaN without ``agreement`` counts), ensemble members' agreement (NaN without
    ``members`` counts), agreement with a reference model's label volume ``reference`` (NaN without) and anatomy."""
    signals: dict[str, Any] = {**_agreement_signals("view_dice", agreement),
                               **_agreement_signals("member_dice", members),
                               **_agreement_signals("reference_dice",
                                                    None if reference is None else [mask_agreement(mask, reference)]),
                               **proportions(mask)}
    if reference is not None:
        signals["reference_voxels"] = {name: int((reference == value).sum()) for name, value in LABEL.items()}
    unknown = {name: math.nan for name in ("margin", "uncertain", "relabelled", *(f"margin_{s}" for s in STRUCTURES))}
    signals.update(probability_signals(probs, mask) if probs is not None else unknown)
    signals.update(anatomy_signals(mask))
    return signals
