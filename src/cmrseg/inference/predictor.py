"""Prediction from a run folder: softmax probabilities with optional TTA, masks, and a folder of PNGs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from cmrseg.constants import NUM_CLASSES
from cmrseg.data.input_spec import InputSpec
from cmrseg.data.slicing import Sample
from cmrseg.errors import CmrsegError
from cmrseg.inference.postprocess import to_masks
from cmrseg.inference.tta import FLIPS, agreement_counts, flip_average, warp_average, zoom_warp
from cmrseg.models.voting import EnsembleNet, find_ensemble
from cmrseg.utils import precision_autocast


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
    """Keep in :attr:`agreement` each image's flip-view agreement counts (with ``tta``) and in
    :attr:`member_agreement` its ensemble members' (an ensemble run): what quality control measures."""

    def __post_init__(self) -> None:
        self.model = self.model.to(memory_format=torch.channels_last)
        self.agreement: list[np.ndarray] | None = None
        """After :meth:`predict_proba` with ``record_agreement`` and ``tta``: per image its ``S x 2`` counts of
        :func:`cmrseg.inference.tta.agreement_counts` (summed over zooms); None otherwise."""
        self.member_agreement: list[np.ndarray] | None = None
        """After :meth:`predict_proba` of an ensemble with ``record_agreement``: per image its ``S x 2`` counts of the
        members' arg-maxes against the ensemble's (the same counting, summed over the TTA views, on the network's
        padded grid); None otherwise."""
        self.ensemble: EnsembleNet | None = find_ensemble(self.model) if isinstance(self.model, nn.Module) else None

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
    def _predict_batch(self, raw: np.ndarray, values: np.ndarray | None, agreement: list[np.ndarray] | None = None,
                       members: list[np.ndarray] | None = None) -> torch.Tensor:
        """Probabilities of a batch; with an ``agreement`` list, each image's flip agreement counts (summed over the
        zooms) are appended to it, with a ``members`` list its ensemble members' agreement counts (summed over every
        flip and zoom)."""
        warps = [zoom_warp(scale) for scale in (self.tta_scales if self.tta else (1.0,))]
        tiled = None if values is None else np.tile(values, (len(warps), 1))
        counts: list[torch.Tensor] | None = [] if agreement is not None else None
        member_counts: list[torch.Tensor] = []
        if members is not None and self.ensemble is not None:
            self.ensemble.observer = lambda views, mean: member_counts.append(agreement_counts(views, mean))
        try:
            probs = warp_average(lambda views: self.predict_flipped(views, tiled, counts), raw, warps)
        finally:
            if self.ensemble is not None:
                self.ensemble.observer = None
        if agreement is not None and counts:
            agreement.extend(torch.cat(counts).unflatten(0, (len(warps), len(raw))).sum(dim=0).cpu().numpy())
        if members is not None and member_counts:  # views went through the network flip-major, then zoom, then image
            flips = len(FLIPS) if self.tta else 1
            members.extend(torch.cat(member_counts).unflatten(0, (flips, len(warps), len(raw))).sum(dim=(0, 1))
                           .cpu().numpy())
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
        record_members = self.record_agreement and self.ensemble is not None
        agreement: list[np.ndarray] = [np.empty(0)] * len(images)
        member_agreement: list[np.ndarray] = [np.empty(0)] * len(images)
        for indices in _batches_by_shape(images, self.batch_size):
            batch_values = np.stack([values[i] for i in indices]) if self.spec.conditions else None
            counts: list[np.ndarray] | None = [] if record else None
            members: list[np.ndarray] | None = [] if record_members else None
            probs = self._predict_batch(np.stack([images[i] for i in indices]), batch_values, counts,
                                        members).cpu().numpy()
            for slot, index in enumerate(indices):
                results[index] = probs[slot]
                if counts:
                    agreement[index] = counts[slot]
                if members:
                    member_agreement[index] = members[slot]
        self.agreement = agreement if record else None
        self.member_agreement = member_agreement if record_members else None
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


def images_per_second(predictor: Predictor, images: Sequence[np.ndarray], repeats: int = 3) -> float:
    """Throughput of ``predictor.predict_proba`` on ``images``: best of ``repeats`` passes after a warm-up."""
    predictor.predict_proba(images[:8])
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict_proba(images)
        best = min(best, time.perf_counter() - started)
    return len(images) / best
