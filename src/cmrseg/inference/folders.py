"""Predicting a folder (or one file) of images into an output folder: PNG masks and overlays here; a folder of
volumes goes to :func:`cmrseg.inference.cohort.predict_cohort` (label volumes, ``cases.csv`` with quality control,
montages and clinical indices, spread over workers)."""

from __future__ import annotations

from pathlib import Path

from cmrseg import runs
from cmrseg.data.readers import list_cases, reads_stacks
from cmrseg.errors import CmrsegError
from cmrseg.inference.loading import load_run
from cmrseg.inference.settings import PredictSettings
from cmrseg.inference.volume_prediction import warn_unknown_spacing
from cmrseg.io.outputs import atomic_dir, check_output_dir
from cmrseg.qc.reference import refuse_for_slices


def predict_folder(
    run_dir: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    overlays: bool = False,
    settings: PredictSettings | None = None,
    overwrite: bool = False,
    indices: bool = False,
    qc_threshold: float | None = None,
    qc_reference: str | Path | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Write ``<stem>_mask.png`` (values 0-3) per image, ``<stem>_overlay.png`` with ``overlays``, and ``cases.csv``
    with each image's quality control (:func:`cmrseg.qc.predict.predict_slices_with_signals`; ``qc_threshold`` sets
    its cut).

    ``out_dir`` must be new, empty, an earlier predict output, or ``overwrite`` (see :mod:`cmrseg.io.outputs`),
    and outside ``images_dir``. The files are written to a temporary folder and then moved in one by one.
    A folder of NIfTI volumes is predicted volume by volume instead, and ``indices`` then also tabulates
    the clinical indices, ``qc_threshold`` sets the quality-control cut there (:mod:`cmrseg.qc`), each volume is
    published as it is done, a rerun skips the finished ones, ``qc_reference`` (a run, export or shipped model) adds
    a second model's agreement to the quality control (:mod:`cmrseg.qc.reference`), and ``workers`` or ``ray_address`` spread the volumes
    over local processes or a Ray cluster (:func:`cmrseg.inference.cohort.predict_cohort`). ``images_dir`` may
    also be one PNG or NIfTI file, predicted as a one-item dataset.
    """
    from PIL import Image

    if reads_stacks(images_dir):
        from cmrseg.inference.cohort import predict_cohort

        return predict_cohort(run_dir, images_dir, out_dir, overlays=overlays, settings=settings, indices=indices,
                              overwrite=overwrite, qc_threshold=qc_threshold, qc_reference=qc_reference,
                              workers=workers, ray_address=ray_address, progress=progress).written
    if indices:
        raise CmrsegError(f"{images_dir}: clinical indices need NIfTI volumes (ED and ES per patient), not PNG slices",
                          key="indices")
    refuse_for_slices(images_dir, qc_reference)
    if workers != 1 or ray_address is not None:
        raise CmrsegError(f"{images_dir}: workers spread NIfTI volumes; PNG slices are predicted in one process",
                          key="workers")
    from cmrseg.data.label_volumes import MANIFEST_FILE
    from cmrseg.io.atomic import write_text_atomic
    from cmrseg.plots import overlay
    from cmrseg.qc import assess, check_threshold
    from cmrseg.qc.assess import slices_manifest
    from cmrseg.qc.predict import predict_slices_with_signals, qc_model

    threshold = check_threshold(qc_threshold)
    kinds = ("mask", "overlay") if overlays else ("mask",)
    planned = [f"{case.case}_{kind}.png" for case in list_cases(images_dir, require_labels=False) for kind in kinds]
    check_output_dir(out_dir, "predict", overwrite=overwrite, inputs=[images_dir, *runs.run_inputs(run_dir)],
                     files=[*planned, MANIFEST_FILE])
    predictor, resolved = load_run(run_dir, settings)
    samples = predictor.spec.read_samples(images_dir, require_masks=False)
    masks, signals = predict_slices_with_signals(predictor, samples, bool(resolved.postprocess), resolved.class_weights)
    checked = assess({s.id: sig for s, sig in zip(samples, signals, strict=True)}, [], qc_model(run_dir), threshold)
    warn_unknown_spacing(run_dir, images_dir)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, "predict") as tmp:
        for sample, mask in zip(samples, masks, strict=True):
            Image.fromarray(mask).save(tmp / f"{sample.id}_mask.png")
            if overlays:
                Image.fromarray(overlay(sample.slice_image, mask)).save(tmp / f"{sample.id}_overlay.png")
        write_text_atomic(tmp / MANIFEST_FILE, slices_manifest(checked))
    return [out_dir / f"{sample.id}_mask.png" for sample in samples]
