"""Predicting whole short-axis volumes with a 2D run: slice by slice, then 3D post-processing.

Every slice of a volume goes through the run's predictor (its normalisation and TTA). The per-class
probabilities are stacked into a volume, the run's class weights are applied before the argmax, and the
clean-up keeps the largest 3D-connected component of each structure (so a structure is one connected
object through the slices, not one blob per slice).

Where both the run's plan (:mod:`cmrseg.planning`) and the input volume know their voxel spacing and the in-plane
spacings differ by more than 1 %, each slice is resampled (bilinear) to the plan's spacing, predicted whole,
and its probabilities resampled back to the input grid before the argmax (nnU-Net's rule,
:mod:`cmrseg.data.resample`). Output label
volumes keep the input's shape, affine and header.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg import runs
from cmrseg.data.conditions import condition_values
from cmrseg.data.readers import Volume
from cmrseg.data.slicing import phase_partners
from cmrseg.data.spacing import check_spacing, spacing_text
from cmrseg.data.resample import resize_channels_first, resize_image, zoom_factors, zoomed_shape
from cmrseg.inference.postprocess import largest_component, to_mask
from cmrseg.inference.predictor import Predictor


def training_spacing(run_dir: str | Path) -> tuple[float, ...] | None:
    """The in-plane spacing (mm) the run predicts at: its plan's target spacing, or for a run trained before plans the
    median voxel spacing of its training volumes; None when unknown (PNG data, acdc96), so slices keep their grid.

    ``run_dir`` may be an export zip (its ``plan.json``/``data.json``) or an ``.onnx`` export (its metadata)."""
    if Path(run_dir).suffix.lower() == ".onnx":
        from cmrseg.formats.onnx import read_plan, training_data

        plan, data = read_plan(run_dir), training_data(run_dir)
        source = f"{run_dir} (metadata {'plan' if plan is not None else 'training_data'})"
    else:
        run_dir = runs.require_run_dir(run_dir)
        plan, data = runs.read_plan(run_dir), runs.read_training_data(run_dir) or {}
        source = str(run_dir / (runs.PLAN_FILE if plan is not None else runs.DATA_FILE))
    return check_spacing(plan.target_spacing if plan is not None else data.get("spacing"), source)


def warn_unknown_spacing(run_dir: str | Path, images: str | Path) -> None:
    """Say once that PNG ``images`` (no pixel spacing) go to a model trained at a known spacing on their own grid."""
    target = training_spacing(run_dir)
    if target is not None:
        warnings.warn(f"{images}: PNG images carry no pixel spacing; predicted on their own grid, as if their pixels were "
                      f"the model's {spacing_text(target)} mm (resample them to it first if they are not)", stacklevel=3)


def warn_spacing_ignored(run_dir: str | Path, spacings: dict[Path, tuple[float, ...] | None]) -> None:
    """Say once that volumes with a real voxel spacing go to a model trained without one (e.g. on the coursework's
    96x96 crops), which predicts each slice on its own grid: such a model was made for crops around the heart, and on
    a full field of view its RV lands on other structures (BENCHMARKS.md, the side by side of #25)."""
    known = [(path, spacing) for path, spacing in spacings.items() if spacing is not None]
    if known:
        path, spacing = known[0]
        warnings.warn(f"{run_dir}: trained without a voxel spacing (on crops around the heart?), but {len(known)} of the "
                      f"volumes have one ({path.name}: {spacing_text(spacing[:2])} mm in-plane); each slice is predicted "
                      "on its own grid. On full field-of-view scans use a model trained on such scans (the shipped model: "
                      "predict without --run)", stacklevel=3)


def volume_probabilities(predictor: Predictor, volume: Volume, target_spacing: Sequence[float] | None = None,
                         partner: Volume | None = None) -> np.ndarray:
    """Class probabilities ``C x H x W x Z`` of every slice of ``volume``, resampled as the module doc says;
    a 2.5-D predictor gets each slice with its neighbours, one that reads the other phase the same slices of
    ``partner`` too (:func:`cmrseg.data.slicing.slice_input`), a conditioned one each slice's phase and position
    (:meth:`~cmrseg.data.readers.base.Volume.conditions`)."""
    spec = predictor.spec
    slices = spec.volume_stacks(volume, partner)
    values = spec.volume_values(volume)
    if target_spacing is not None and volume.spacing is None:
        warnings.warn(f"{volume.path}: the header gives no voxel spacing; predicted on its own grid, as if its pixels "
                      f"were the model's {spacing_text(target_spacing)} mm (volumes in voxels)", stacklevel=2)
    factors = zoom_factors(volume.spacing, target_spacing, volume.path)
    height, width = slices[0].shape[:2]
    if factors is not None:
        size = zoomed_shape((height, width), factors)
        slices = [resize_image(image, size) for image in slices]
    probs = predictor.predict_proba(slices, values)
    if factors is not None:
        probs = [resize_channels_first(p, (height, width)) for p in probs]
    return np.stack(probs, axis=-1)


def predict_volume_probabilities(predictor: Predictor, volumes: Sequence[Volume],
                                 target_spacing: Sequence[float] | None = None, progress: bool = False) -> list[np.ndarray]:
    """:func:`volume_probabilities` of each of ``volumes``, each with its other phase among them where the predictor
    reads it; a missing phase or partner is refused before anything is predicted."""
    from tqdm.auto import tqdm

    require_conditions(predictor, [(volume.phase, volume.path) for volume in volumes])
    partners = partners_for(predictor, volumes, lambda volume: volume.path)
    return [volume_probabilities(predictor, volume, target_spacing, partners.get(volume.case))
            for volume in tqdm(volumes, desc="predict", unit="volume", disable=not progress, dynamic_ncols=True)]


def require_conditions(predictor: Predictor, phases: Iterable[tuple[str | None, Path]]) -> None:
    """Refuse, before anything is predicted, a volume (``(phase, file)``) whose phase a conditioned predictor
    needs and nobody knows (:mod:`cmrseg.data.conditions`)."""
    names = predictor.spec.conditions
    for phase, path in phases if names else ():
        condition_values(names, phase, 0, 1, str(path))


def partners_for(predictor: Predictor, items: Sequence[Any], where: Callable[[Any], Path]) -> dict[str, Any]:
    """The other-phase partner of each volume or case for a predictor that reads it (``model_info.other_phase``),
    checked before anything is predicted; empty for any other predictor."""
    return phase_partners(items, where) if predictor.spec.other_phase else {}


def volume_mask(probs: np.ndarray, postprocess: bool, class_weights: Sequence[float] | None = None) -> np.ndarray:
    """Label volume (uint8) of ``C x H x W x Z`` probabilities: weighted argmax, then the largest 3D component."""
    mask = to_mask(probs, class_weights)
    return largest_component(mask) if postprocess else mask


def montage(volume: Volume, mask: np.ndarray, columns: int = 6, truth: np.ndarray | None = None) -> np.ndarray:
    """RGB picture of every slice of ``volume`` with the outlines of ``mask`` (and of ``truth`` beside it), slice
    numbers and a colour legend: :func:`cmrseg.plots.montage`."""
    from cmrseg.plots import montage as draw

    return draw(volume.image, mask, truth, columns)
