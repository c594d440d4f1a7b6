"""Prediction from a run folder: softmax probabilities with optional TTA, masks, and a folder of PNGs."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from cmrseg import runs
from cmrseg.constants import NUM_CLASSES
from cmrseg.data.input_spec import InputSpec
from cmrseg.data.readers import list_cases, reads_stacks
from cmrseg.data.slicing import Sample
from cmrseg.errors import CmrsegError
from cmrseg.inference.postprocess import to_masks
from cmrseg.inference.settings import PredictSettings
from cmrseg.inference.tta import FLIPS, flip_average, warp_average, zoom_warp
from cmrseg.utils import precision_autocast, resolve_device


class Predictor(Protocol):
    """Anything that turns grayscale uint8 images into per-class probabilities (C x H x W each); a conditioned
    model also takes each image's condition values (:mod:`cmrseg.data.conditions`). ``spec`` says what it reads:
    the slices of each input (neighbours, other phase), its condition planes, normalisation and plan
    (:class:`~cmrseg.data.input_spec.InputSpec`)."""

    spec: InputSpec

    def predict_proba(self, images: Sequence[np.ndarray],
                      conditions: Sequence[np.ndarray] | None = None) -> list[np.ndarray]: ...


BATCH_PIXELS = 2**21
"""At most this many input pixels (images x height x width) are predicted in one batch, so memory stays bounded on
large slices (a 512 x 512 slice goes 8 at a time); slices of up to 512 x 512 px keep the batch size."""
VIEW_PIXELS = 2**19
"""At most this many input pixels of TTA views go through the network in one call (32 views of a 96 x 96 slice,
2 of a 512 x 512 one)."""


def pixel_bounded(count: int, shape: Sequence[int], pixels: int) -> int:
    """``count``, lowered so that that many images of ``shape`` (``... x H x W``) hold at most ``pixels`` (at least 1)."""
    return max(1, min(count, pixels // max(1, int(shape[-1]) * int(shape[-2]))))


def _batches_by_shape(images: Sequence[np.ndarray], batch_size: int) -> list[list[int]]:
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        by_shape.setdefault(image.shape, []).append(index)
    batches = []
    for shape, group in by_shape.items():
        size = pixel_bounded(batch_size, shape, BATCH_PIXELS)
        batches += [group[i : i + size] for i in range(0, len(group), size)]
    return batches


@dataclass
class ModelPredictor:
    """One trained network with its input spec; ``tta`` averages softmax over flips (and ``tta_scales`` zooms).

    With ``tta`` every zoom of ``tta_scales`` is predicted in all four flips; each softmax is flipped and
    zoomed back (borders extended) before the average (see :mod:`cmrseg.inference.tta`). Without ``tta``
    the image is predicted once. ``precision`` ``bfloat16`` runs the network under bfloat16 autocast.

    All views of a batch (zooms x flips x images) go through the network together, ``view_batch`` at a
    time, under ``torch.inference_mode``: the 12 zoom-TTA views of a slice are a few calls instead of 12
    (BENCHMARKS.md, #14). The network runs in channels-last memory format, in batches of 8: on 2 CPU
    threads that predicts the default (input_scale 2) U-Net about 1.5x faster than contiguous NCHW
    batches of 32. ``model`` may be any module with the network's call signature, e.g. an onnxruntime
    session (:class:`cmrseg.inference.onnx_engine.OnnxNetwork`).
    """

    model: nn.Module
    spec: InputSpec
    """What the network reads and how a stored slice becomes it (:mod:`cmrseg.data.input_spec`)."""
    device: torch.device
    tta: bool = False
    batch_size: int = 8
    tta_scales: tuple[float, ...] = (1.0,)
    view_batch: int = 32
    precision: str = "float32"
    source: str = "the network"
    """What the network was loaded from (a checkpoint or ``.onnx`` file), named when its output is refused."""
    record_agreement: bool = False
    """With ``tta``, keep in :attr:`agreement` each image's flip-view agreement counts (quality control)."""

    def __post_init__(self) -> None:
        self.model = self.model.to(memory_format=torch.channels_last)
        self.agreement: list[np.ndarray] | None = None
        """After :meth:`predict_proba` with ``record_agreement`` and ``tta``: per image its ``S x 2`` counts of
        :func:`cmrseg.inference.tta.agreement_counts` (summed over zooms); None otherwise."""

    @torch.inference_mode()
    def predict_flipped(self, raw: np.ndarray, values: np.ndarray | None = None,
                        agreement: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Softmax (``N x C x H x W``, on the model's device) of ``N x K x H x W`` raw images (K slices each),
        made the network's input by :meth:`InputSpec.network_input` (as training makes it) with each image's
        condition ``values`` (``N x M``); with ``tta`` averaged over the four flips. Zooms and other warps of the raw
        image go around it. ``agreement`` collects the flip views' agreement counts (:func:`flip_average`)."""
        batch = torch.from_numpy(self.spec.network_input(raw, values)).to(self.device)
        with precision_autocast(self.device, self.precision):
            return flip_average(self.scores, batch, FLIPS if self.tta else FLIPS[:1],
                                pixel_bounded(self.view_batch, batch.shape, VIEW_PIXELS), agreement)

    def scores(self, batch: torch.Tensor) -> torch.Tensor:
        """The network's scores of a normalised ``N x K x H x W`` batch, checked for every engine: ``N x 4 x H x W``
        and finite, else a one-line error (a graph with other outputs, NaN weights) instead of all-background masks."""
        scores = self.model(batch)
        expected = (batch.shape[0], NUM_CLASSES, *batch.shape[2:])
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != expected:
            shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise CmrsegError(f"{self.source}: the network returned scores of shape {shape} for an input of "
                              f"{tuple(batch.shape)}; expected {expected} (N x {NUM_CLASSES} classes x H x W)")
        if not torch.isfinite(scores).all():
            raise CmrsegError(f"{self.source}: the network returned NaN or infinite scores (broken weights?)")
        return scores

    @torch.inference_mode()
    def _predict_batch(self, raw: np.ndarray, values: np.ndarray | None,
                       agreement: list[np.ndarray] | None = None) -> torch.Tensor:
        """Probabilities of a batch; with an ``agreement`` list, each image's flip agreement counts (summed over the
        zooms) are appended to it."""
        warps = [zoom_warp(scale) for scale in (self.tta_scales if self.tta else (1.0,))]
        tiled = None if values is None else np.tile(values, (len(warps), 1))
        counts: list[torch.Tensor] | None = [] if agreement is not None else None
        probs = warp_average(lambda views: self.predict_flipped(views, tiled, counts), raw, warps)
        if agreement is not None and counts:
            agreement.extend(torch.cat(counts).unflatten(0, (len(warps), len(raw))).sum(dim=0).cpu().numpy())
        return probs

    def predict_proba(self, images: Sequence[np.ndarray],
                      conditions: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """Probabilities ``C x H x W`` of each ``H x W`` slice (``H x W x K`` stack for a 2.5-D model); a
        conditioned model needs each slice's ``conditions`` values (:meth:`cmrseg.data.readers.base.Volume.conditions`)."""
        self.model.eval()
        values = self.spec.condition_values(len(images), conditions)
        images = [self.spec.channels_first(image) for image in images]
        results: list[np.ndarray] = [np.empty(0)] * len(images)
        record = self.record_agreement and self.tta
        agreement: list[np.ndarray] = [np.empty(0)] * len(images)
        for indices in _batches_by_shape(images, self.batch_size):
            batch_values = np.stack([values[i] for i in indices]) if self.spec.conditions else None
            counts: list[np.ndarray] | None = [] if record else None
            probs = self._predict_batch(np.stack([images[i] for i in indices]), batch_values, counts).cpu().numpy()
            for slot, index in enumerate(indices):
                results[index] = probs[slot]
                if counts:
                    agreement[index] = counts[slot]
        self.agreement = agreement if record else None
        return results


def predict_masks(
    predictor: Predictor,
    images: Sequence[np.ndarray],
    postprocess: bool = False,
    class_weights: Sequence[float] | None = None,
) -> list[np.ndarray]:
    """Class masks (weighted argmax) of single images, optionally cleaned to the largest component per structure."""
    return to_masks(predictor.predict_proba(images), class_weights, postprocess)


def sample_probabilities(predictor: Predictor, samples: Sequence[Sample]) -> list[np.ndarray]:
    """Class probabilities of samples, with their condition values for a conditioned model."""
    names = predictor.spec.conditions
    values = [sample.conditions(names) for sample in samples] if names else None
    return predictor.predict_proba([s.image for s in samples], values)


def predict_sample_masks(
    predictor: Predictor,
    samples: Sequence[Sample],
    postprocess: bool = False,
    class_weights: Sequence[float] | None = None,
) -> list[np.ndarray]:
    """:func:`predict_masks` of samples, with their condition values for a conditioned model."""
    return to_masks(sample_probabilities(predictor, samples), class_weights, postprocess)


def load_run(run_dir: str | Path, settings: PredictSettings | None = None) -> tuple[ModelPredictor, PredictSettings]:
    """Load a trained run (a folder, an export zip, or with engine ``onnxruntime`` an exported ``.onnx``;
    an ensemble run is one too) as a predictor, plus ``settings`` resolved against the run's config
    (:meth:`PredictSettings.resolve`), which the predictor already applies (TTA, zooms).

    With ``settings.engine`` ``onnxruntime`` the network is exported to ONNX (in memory) and run by
    onnxruntime on the CPU behind the same predictor: same normalisation, TTA and batching."""
    settings = settings or PredictSettings()
    if Path(run_dir).suffix.lower() == ".onnx":
        from cmrseg.inference.onnx_engine import load_onnx

        if settings.engine != "onnxruntime":
            raise CmrsegError(f"{run_dir}: an ONNX graph runs with --engine onnxruntime (torch needs the run folder or zip)")
        return load_onnx(run_dir, settings)
    run_dir = runs.require_run_dir(run_dir)
    config = runs.read_run_config(run_dir)
    resolved = settings.resolve(config)
    onnx = resolved.engine == "onnxruntime"
    device = resolve_device("cpu" if onnx else resolved.device)
    model = runs.load_model_from_checkpoint(runs.checkpoint_path(run_dir, resolved.checkpoint), config.model_info, device)
    predictor = ModelPredictor(model, runs.read_input_spec(run_dir, config), device, tta=bool(resolved.tta),
                               tta_scales=resolved.tta_scales or (1.0,), precision=resolved.precision,
                               source=str(runs.checkpoint_path(run_dir, resolved.checkpoint)))
    if onnx:
        from cmrseg.inference.onnx_engine import onnx_predictor_from_torch

        predictor = onnx_predictor_from_torch(predictor, weights=runs.checkpoint_path(run_dir, resolved.checkpoint),
                                              model_info=config.model_info)
    return predictor, resolved


def warn_unknown_spacing(run_dir: str | Path, images: str | Path) -> None:
    """Say once that PNG ``images`` (no pixel spacing) go to a model trained at a known spacing on their own grid."""
    from cmrseg.data.spacing import spacing_text
    from cmrseg.inference.volume_prediction import training_spacing

    target = training_spacing(run_dir)
    if target is not None:
        warnings.warn(f"{images}: PNG images carry no pixel spacing; predicted on their own grid, as if their pixels were "
                      f"the model's {spacing_text(target)} mm (resample them to it first if they are not)", stacklevel=3)


def predict_folder(
    run_dir: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    overlays: bool = False,
    settings: PredictSettings | None = None,
    overwrite: bool = False,
    indices: bool = False,
    qc_threshold: float | None = None,
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
    published as it is done, a rerun skips the finished ones, and ``workers`` or ``ray_address`` spread the volumes
    over local processes or a Ray cluster (:func:`cmrseg.inference.cohort.predict_cohort`). ``images_dir`` may
    also be one PNG or NIfTI file, predicted as a one-item dataset.
    """
    from PIL import Image

    if reads_stacks(images_dir):
        from cmrseg.inference.cohort import predict_cohort

        return predict_cohort(run_dir, images_dir, out_dir, overlays=overlays, settings=settings, indices=indices,
                              overwrite=overwrite, qc_threshold=qc_threshold, workers=workers, ray_address=ray_address,
                              progress=progress).written
    if indices:
        raise CmrsegError(f"{images_dir}: --indices needs NIfTI volumes (ED and ES per patient), not PNG slices")
    if workers != 1 or ray_address is not None:
        raise CmrsegError(f"{images_dir}: --workers and --ray-address spread NIfTI volumes; PNG slices are predicted "
                          "in one process")
    from cmrseg.data.label_volumes import MANIFEST_FILE
    from cmrseg.io.atomic import write_text_atomic
    from cmrseg.io.outputs import atomic_dir, check_output_dir
    from cmrseg.plots import overlay
    from cmrseg.qc import assess, check_threshold
    from cmrseg.qc.assess import slices_manifest
    from cmrseg.qc.predict import predict_slices_with_signals, run_qc_model

    threshold = check_threshold(qc_threshold)
    kinds = ("mask", "overlay") if overlays else ("mask",)
    planned = [f"{case.case}_{kind}.png" for case in list_cases(images_dir, require_labels=False) for kind in kinds]
    check_output_dir(out_dir, "predict", overwrite=overwrite, inputs=[images_dir, *runs.run_inputs(run_dir)],
                     files=[*planned, MANIFEST_FILE])
    predictor, resolved = load_run(run_dir, settings)
    samples = predictor.spec.read_samples(images_dir, require_masks=False)
    masks, signals = predict_slices_with_signals(predictor, samples, bool(resolved.postprocess), resolved.class_weights)
    checked = assess({s.id: sig for s, sig in zip(samples, signals, strict=True)}, [], run_qc_model(run_dir), threshold)
    warn_unknown_spacing(run_dir, images_dir)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, "predict") as tmp:
        for sample, mask in zip(samples, masks, strict=True):
            Image.fromarray(mask).save(tmp / f"{sample.id}_mask.png")
            if overlays:
                Image.fromarray(overlay(sample.slice_image, mask)).save(tmp / f"{sample.id}_overlay.png")
        write_text_atomic(tmp / MANIFEST_FILE, slices_manifest(checked))
    return [out_dir / f"{sample.id}_mask.png" for sample in samples]


def images_per_second(predictor: Predictor, images: Sequence[np.ndarray], repeats: int = 3) -> float:
    """Throughput of ``predictor.predict_proba`` on ``images``: best of ``repeats`` passes after a warm-up."""
    predictor.predict_proba(images[:8])
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict_proba(images)
        best = min(best, time.perf_counter() - started)
    return len(images) / best
