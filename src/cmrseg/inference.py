"""Prediction from a run folder: softmax probabilities, optional flip TTA and largest-component clean-up."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from torch.nn import functional as F

from cmrseg import runs
from cmrseg.config import ModelInfo, checked_tta_scales
from cmrseg.constants import NUM_CLASSES
from cmrseg.data.dataset import Normalization
from cmrseg.errors import CmrsegError
from cmrseg.models import build_model
from cmrseg.models.pretrained import check_state_dict
from cmrseg.utils import resolve_device

FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def zoom(batch: torch.Tensor, factor: float, padding: str = "zeros") -> torch.Tensor:
    """``batch`` (N x C x H x W) magnified ``factor`` times about the image centre, bilinearly."""
    theta = torch.tensor([[1.0 / factor, 0.0, 0.0], [0.0, 1.0 / factor, 0.0]], dtype=batch.dtype, device=batch.device)
    grid = F.affine_grid(theta.expand(batch.shape[0], 2, 3), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode=padding, align_corners=False)


class Predictor(Protocol):
    """Anything that turns grayscale uint8 images into per-class probabilities (C x H x W each)."""

    def predict_proba(self, images: Sequence[np.ndarray]) -> list[np.ndarray]: ...


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep only the largest connected component of each structure; dropped pixels become background."""
    cleaned = mask.copy()
    for label in range(1, NUM_CLASSES):
        components, count = ndimage.label(mask == label)
        if count > 1:
            sizes = ndimage.sum_labels(np.ones_like(mask), components, index=range(1, count + 1))
            cleaned[(components > 0) & (components != int(np.argmax(sizes)) + 1)] = 0
    return cleaned


def _batches_by_shape(images: Sequence[np.ndarray], batch_size: int) -> list[list[int]]:
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        by_shape.setdefault(image.shape, []).append(index)
    return [group[i : i + batch_size] for group in by_shape.values() for i in range(0, len(group), batch_size)]


@dataclass
class ModelPredictor:
    """One trained network with its normalisation; ``tta`` averages softmax over flips (and ``tta_scales`` zooms).

    With ``tta`` every zoom of ``tta_scales`` is predicted in all four flips; each softmax is flipped and
    zoomed back (borders extended) before the average. Without ``tta`` the image is predicted once.
    The zoom acts on the raw image (black outside it) before normalisation, as training augmentation
    does, so a single model and an ensemble run folder (whose members normalise) see the same input.

    All views of a batch (flips x zooms x images) go through the network together, ``view_batch`` at
    a time, under ``torch.inference_mode``: 12 zoom-TTA views of a slice are a few calls instead of 12
    (BENCHMARKS.md, #14, compares it with one call per view). The network runs in
    channels-last memory format: on 2 CPU threads that predicts the default (input_scale 2) U-Net
    about 1.5x faster than contiguous NCHW batches of 32.
    """

    model: nn.Module
    normalization: Normalization
    device: torch.device
    tta: bool = False
    batch_size: int = 8
    tta_scales: tuple[float, ...] = (1.0,)
    view_batch: int = 32

    def __post_init__(self) -> None:
        self.model = self.model.to(memory_format=torch.channels_last)

    def predict_flipped(self, raw: np.ndarray) -> torch.Tensor:
        """Softmax (``N x C x H x W``, on the model's device) of ``N x H x W`` raw images, normalised here;
        with ``tta`` averaged over the four flips. Zooms and other warps of the raw image go around it."""
        return self._predict_views(raw, (1.0,))

    @torch.inference_mode()
    def _predict_views(self, raw: np.ndarray, scales: Sequence[float]) -> torch.Tensor:
        """Mean softmax over the flips (with ``tta``) of each zoom in ``scales``, each mapped back first."""
        flips = FLIPS if self.tta else FLIPS[:1]
        zoomed = [raw if scale == 1 else zoom(torch.from_numpy(raw.astype(np.float32))[:, None], scale)[:, 0].numpy()
                  for scale in scales]
        batch = torch.from_numpy(np.stack([self.normalization.apply(image) for views in zoomed for image in views])[:, None])
        batch = batch.to(self.device)
        views = torch.cat([batch.flip(dims) if dims else batch for dims in flips])
        probs = torch.cat([torch.softmax(self.model(chunk), dim=1) for chunk in views.split(self.view_batch)])
        probs = probs.unflatten(0, (len(flips), len(scales), len(raw)))
        unflipped = sum(view.flip(dims) if dims else view for view, dims in zip(probs, flips, strict=True)) / len(flips)
        return sum(p if scale == 1 else zoom(p, 1 / scale, padding="border")
                   for p, scale in zip(unflipped, scales, strict=True)) / len(scales)

    def _predict_batch(self, raw: np.ndarray) -> torch.Tensor:
        return self._predict_views(raw, self.tta_scales if self.tta else (1.0,))

    def predict_proba(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.model.eval()
        results: list[np.ndarray] = [np.empty(0)] * len(images)
        for indices in _batches_by_shape(images, self.batch_size):
            probs = self._predict_batch(np.stack([images[i] for i in indices])).cpu().numpy()
            for slot, index in enumerate(indices):
                results[index] = probs[slot]
        return results


def to_mask(probs: np.ndarray, class_weights: Sequence[float] | None = None) -> np.ndarray:
    """Class mask (uint8) of ``C x H x W`` probabilities: the argmax, after scaling class c by ``class_weights[c]``."""
    if class_weights is not None:
        probs = probs * np.asarray(class_weights, dtype=probs.dtype)[:, None, None]
    return probs.argmax(0).astype(np.uint8)


def predict_masks(
    predictor: Predictor,
    images: Sequence[np.ndarray],
    postprocess: bool = False,
    class_weights: Sequence[float] | None = None,
) -> list[np.ndarray]:
    """Class masks (weighted argmax), optionally cleaned to the largest component per structure."""
    masks = [to_mask(probs, class_weights) for probs in predictor.predict_proba(images)]
    return [largest_component(mask) for mask in masks] if postprocess else masks


def load_model_from_checkpoint(checkpoint_path: Path, model_info: ModelInfo, device: torch.device) -> nn.Module:
    """Build ``model_info``'s network and load the checkpoint, rejecting one made for another model."""
    checkpoint = runs.load_checkpoint(checkpoint_path)
    saved_name = (checkpoint.get("model_info") or {}).get("name")
    if saved_name and saved_name != model_info.name:
        raise CmrsegError(f"{checkpoint_path}: checkpoint is for model '{saved_name}', the run's config says '{model_info.name}'")
    model = build_model(model_info.model_copy(update={"pretrained": None}))
    check_state_dict(model, checkpoint["model"], str(checkpoint_path))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval()


@dataclass
class RunSettings:
    """How a run folder predicts by default (its config's ``tta``, ``tta_scales`` and ``postprocess``)."""

    tta: bool
    postprocess: bool
    class_weights: list[float] | None = None
    tta_scales: tuple[float, ...] = (1.0,)


ENGINES = ("torch", "onnxruntime")


def resolve_tta(default_tta: bool, default_scales: Sequence[float], tta: bool | None,
                tta_scales: Sequence[float] | None) -> tuple[bool, tuple[float, ...]]:
    """TTA on/off and its zooms: the given overrides over the defaults; zooms given without ``tta`` turn it on."""
    use_tta = (default_tta or tta_scales is not None) if tta is None else tta
    scales = tuple(checked_tta_scales(default_scales if tta_scales is None else tta_scales)) if use_tta else (1.0,)
    return use_tta, scales


def load_model_predictor(
    run_dir: str | Path,
    checkpoint: str = "best",
    device: str = "auto",
    tta: bool | None = None,
    tta_scales: Sequence[float] | None = None,
) -> tuple[ModelPredictor, RunSettings]:
    """The torch network of a run folder or export zip with its normalisation and default settings."""
    run_dir = runs.require_run_dir(run_dir)
    config = runs.read_run_config(run_dir)
    torch_device = resolve_device(device)
    checkpoint_path = run_dir / (checkpoint if checkpoint.endswith(".pt") else f"{checkpoint}.pt")
    model = load_model_from_checkpoint(checkpoint_path, config.model_info, torch_device)
    normalization_path = run_dir / runs.NORMALIZATION_FILE
    if not normalization_path.is_file():
        raise CmrsegError(f"{normalization_path}: missing; the run folder is incomplete")
    normalization = Normalization.from_dict(json.loads(normalization_path.read_text()))
    use_tta, scales = resolve_tta(config.tta, config.tta_scales, tta, tta_scales)
    return ModelPredictor(model, normalization, torch_device, tta=use_tta, tta_scales=scales), RunSettings(
        use_tta, config.postprocess.largest_component, config.postprocess.class_weights, scales
    )


def load_run(
    run_dir: str | Path,
    checkpoint: str = "best",
    device: str = "auto",
    tta: bool | None = None,
    tta_scales: Sequence[float] | None = None,
    engine: str = "torch",
) -> tuple[Predictor, RunSettings]:
    """Load a trained run (a folder, an export zip or, with onnxruntime, an exported ``.onnx``) as a
    :class:`Predictor` plus its default settings.

    ``tta`` and ``tta_scales`` override the run config's test-time augmentation when given; zooms given
    without ``tta`` turn TTA on. ``engine`` ``onnxruntime`` runs the network exported to ONNX (on the CPU)
    behind the same TTA, normalisation and batching."""
    if engine not in ENGINES:
        raise CmrsegError(f"--engine '{engine}': expected one of {', '.join(ENGINES)}")
    if Path(run_dir).suffix.lower() == ".onnx":
        from cmrseg.onnx_engine import load_onnx

        if engine != "onnxruntime":
            raise CmrsegError(f"{run_dir}: an ONNX graph runs with --engine onnxruntime (torch needs the run folder or zip)")
        return load_onnx(run_dir, tta=tta, tta_scales=tta_scales)
    predictor, settings = load_model_predictor(run_dir, checkpoint, "cpu" if engine == "onnxruntime" else device, tta, tta_scales)
    if engine == "onnxruntime":
        from cmrseg.onnx_engine import onnx_predictor_from_torch

        return onnx_predictor_from_torch(predictor), settings
    return predictor, settings


def predict_folder(
    run_dir: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    overlays: bool = False,
    tta: bool | None = None,
    postprocess: bool | None = None,
    device: str = "auto",
    tta_scales: Sequence[float] | None = None,
    engine: str = "torch",
) -> list[Path]:
    """Write ``<stem>_mask.png`` (values 0-3) per image, and ``<stem>_overlay.png`` with ``overlays``.

    All files appear at once: they are written to a temporary folder that is renamed at the end.
    """
    from PIL import Image

    from cmrseg.data.reader import load_folder
    from cmrseg.plots import overlay
    from cmrseg.utils import atomic_dir

    samples = load_folder(images_dir, require_masks=False)
    predictor, settings = load_run(run_dir, device=device, tta=tta, tta_scales=tta_scales, engine=engine)
    use_post = settings.postprocess if postprocess is None else postprocess
    masks = predict_masks(predictor, [s.image for s in samples], use_post, settings.class_weights)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        for sample, mask in zip(samples, masks, strict=True):
            Image.fromarray(mask).save(tmp / f"{sample.id}_mask.png")
            if overlays:
                Image.fromarray(overlay(sample.image, mask)).save(tmp / f"{sample.id}_overlay.png")
    return [out_dir / f"{sample.id}_mask.png" for sample in samples]


def images_per_second(predictor: Predictor, images: Sequence[np.ndarray], repeats: int = 3) -> float:
    """Throughput of ``predictor.predict_proba`` on ``images``: best of ``repeats`` passes after a warm-up."""
    import time

    predictor.predict_proba(images[:8])
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict_proba(images)
        best = min(best, time.perf_counter() - started)
    return len(images) / best
