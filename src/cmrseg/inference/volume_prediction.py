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

import csv
import io
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg import runs
from cmrseg.data.conditions import condition_values
from cmrseg.data.spacing import check_spacing
from cmrseg.data.label_volumes import MANIFEST_FILE
from cmrseg.data.readers import Volume, VolumeCase, list_cases, load_volume
from cmrseg.data.readers.nifti import write_label_volume
from cmrseg.data.slicing import check_partner, phase_partners, slice_input
from cmrseg.data.spacing import spacing_text
from cmrseg.data.resample import resize_channels_first, resize_image, zoom_factors, zoomed_shape
from cmrseg.errors import CmrsegError
from cmrseg.inference import PredictSettings, Predictor, largest_component, load_run, to_mask
from cmrseg.io.atomic import write_text_atomic
from cmrseg.io.outputs import atomic_dir

QC_COLUMNS = ("qc_dice", "qc_flag", "qc_reasons")
"""Quality-control columns of ``cases.csv`` (:mod:`cmrseg.qc`)."""


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


def volume_probabilities(predictor: Predictor, volume: Volume, target_spacing: Sequence[float] | None = None,
                         partner: Volume | None = None) -> np.ndarray:
    """Class probabilities ``C x H x W x Z`` of every slice of ``volume``, resampled as the module doc says;
    a 2.5-D predictor gets each slice with its neighbours, one that reads the other phase the same slices of
    ``partner`` too (:func:`cmrseg.data.slicing.slice_input`), a conditioned one each slice's phase and position
    (:meth:`~cmrseg.data.readers.base.Volume.conditions`)."""
    context = getattr(predictor, "context_slices", 0)
    names = getattr(predictor, "conditions", ())
    if getattr(predictor, "other_phase", False):
        if partner is None:
            raise CmrsegError(f"{volume.path}: this model also reads the patient's other phase "
                              "(model_info.other_phase); predict ED and ES of the patient together")
        check_partner(volume, partner)
    else:
        partner = None
    values = [volume.conditions(names, z) for z in range(volume.n_slices)] if names else None
    slices = [slice_input(volume, z, context, partner) for z in range(volume.n_slices)]
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
    names = getattr(predictor, "conditions", ())
    for phase, path in phases if names else ():
        condition_values(names, phase, 0, 1, str(path))


def partners_for(predictor: Predictor, items: Sequence[Any], where: Callable[[Any], Path]) -> dict[str, Any]:
    """The other-phase partner of each volume or case for a predictor that reads it (``model_info.other_phase``),
    checked before anything is predicted; empty for any other predictor."""
    return phase_partners(items, where) if getattr(predictor, "other_phase", False) else {}


def volume_mask(probs: np.ndarray, postprocess: bool, class_weights: Sequence[float] | None = None) -> np.ndarray:
    """Label volume (uint8) of ``C x H x W x Z`` probabilities: weighted argmax, then the largest 3D component."""
    mask = to_mask(probs, class_weights)
    return largest_component(mask) if postprocess else mask


def montage(volume: Volume, mask: np.ndarray, columns: int = 6, truth: np.ndarray | None = None) -> np.ndarray:
    """RGB picture of every slice of ``volume`` with the outlines of ``mask`` (and of ``truth`` beside it), slice
    numbers and a colour legend: :func:`cmrseg.plots.montage`."""
    from cmrseg.plots import montage as draw

    return draw(volume.image, mask, truth, columns)


def _manifest(volumes: Sequence[Volume], qc: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """``cases.csv``: one row per volume, with its quality control (``qc_dice``, ``qc_flag``, ``qc_reasons``, see
    :mod:`cmrseg.qc`) when ``qc`` gives it by case."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case", "patient", "phase", "group", "spacing_mm", *(QC_COLUMNS if qc is not None else ())])
    for v in volumes:
        checks = [] if qc is None else [f"{qc[v.case]['qc_dice']:.3f}", qc[v.case]["qc_flag"], qc[v.case]["qc_reasons"]]
        writer.writerow([v.case, v.patient, v.phase or "", v.group, "" if v.spacing is None else spacing_text(v.spacing),
                         *checks])
    return buffer.getvalue()


INDICES_FILE = "indices.csv"


def planned_outputs(cases: Sequence[VolumeCase], overlays: bool, indices: bool) -> list[str]:
    """The files :func:`predict_volume_folder` writes for ``cases`` (checked against foreign files first)."""
    names = [f"{case.case}.nii.gz" for case in cases] + [MANIFEST_FILE]
    names += [f"{case.case}_overlay.png" for case in cases] if overlays else []
    return names + ([INDICES_FILE] if indices else [])


def predict_volume_folder(
    run_dir: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    overlays: bool = False,
    settings: PredictSettings | None = None,
    indices: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    qc_threshold: float | None = None,
) -> list[Path]:
    """Write ``CASE.nii.gz`` (uint8 labels, the input's geometry) per input volume, ``cases.csv``, and with
    ``overlays`` ``CASE_overlay.png`` (all slices side by side); with ``indices`` also ``indices.csv``.

    ``cases.csv`` and ``indices.csv`` carry each volume's and patient's quality control (:mod:`cmrseg.qc`,
    docs/qc.md): ``qc_threshold`` is the predicted Dice below which a volume is flagged (default
    :data:`cmrseg.qc.DEFAULT_THRESHOLD`); the run's calibrated QC model is used when it has one.

    ``out_dir`` follows the rules of :func:`cmrseg.inference.predict_folder` (new, empty, an earlier predict
    output or ``overwrite``; outside the input)."""
    from PIL import Image
    from tqdm.auto import tqdm

    from cmrseg.metrics.clinical import PhaseLabel, indices_table, with_patient_qc, write_indices_csv
    from cmrseg.io.outputs import check_output_dir
    from cmrseg.qc import assess, check_threshold
    from cmrseg.qc.assess import anatomy_warning
    from cmrseg.qc.predict import enable_agreement, last_signals, run_qc_model

    threshold = check_threshold(qc_threshold)
    cases = list_cases(images_dir, require_labels=False)
    check_output_dir(out_dir, "predict", overwrite=overwrite, inputs=[images_dir, *runs.run_inputs(run_dir)],
                     files=planned_outputs(cases, overlays, indices))
    predictor, resolved = load_run(run_dir, settings)
    qc_model, signals = run_qc_model(run_dir), {}
    enable_agreement(predictor)
    require_conditions(predictor, [(case.phase, case.image_path) for case in cases])
    partners = partners_for(predictor, cases, lambda case: case.image_path)
    target = training_spacing(run_dir)
    out_dir = Path(out_dir)
    volumes, phases = [], []
    loaded: dict[str, Volume] = {}

    def read(case: VolumeCase) -> Volume:
        """Each volume once, though a model that reads the other phase needs it for its partner too."""
        if case.case not in loaded:
            loaded[case.case] = load_volume(case, with_label=False)
        return loaded[case.case]

    with atomic_dir(out_dir, "predict") as tmp:
        for case in tqdm(cases, desc="predict", unit="volume", disable=not progress, dynamic_ncols=True):
            volume = read(case)
            partner = read(partners[case.case]) if case.case in partners else None
            probs = volume_probabilities(predictor, volume, target, partner)
            mask = volume_mask(probs, bool(resolved.postprocess), resolved.class_weights)
            signals[volume.case] = last_signals(predictor, probs, mask)
            write_label_volume(mask, volume, tmp / f"{volume.case}.nii.gz")
            if overlays:
                Image.fromarray(montage(volume, mask)).save(tmp / f"{volume.case}_overlay.png")
            volumes.append(volume)
            phases.append(PhaseLabel.from_volume(volume, mask))
        checked = assess(signals, phases, qc_model, threshold)
        for line in filter(None, (anatomy_warning(case, found) for case, found in signals.items())):
            warnings.warn(line, stacklevel=2)
        write_text_atomic(tmp / MANIFEST_FILE, _manifest(volumes, checked.cases))
        if indices:
            write_indices_csv(with_patient_qc(indices_table(phases), checked), tmp / INDICES_FILE)
    return [out_dir / f"{v.case}.nii.gz" for v in volumes]
