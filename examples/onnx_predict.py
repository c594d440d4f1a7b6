"""Segment one PNG, or one slice of a short-axis NIfTI volume, with a cmrseg ONNX export, using only numpy,
onnxruntime, pillow and (for NIfTI) nibabel: no cmrseg, no torch.

    pip install numpy onnxruntime pillow nibabel
    python examples/onnx_predict.py model.onnx slice.png slice_mask.png
    python examples/onnx_predict.py model.onnx scan_ED.nii.gz mask.png --slice 4 --phase ED

The graph takes the normalised image (N x C x H x W float32: the slice, then one constant plane per condition the
model was trained with) and returns scores whose argmax over the classes is the mask. Everything else comes from the
model's metadata (``cmrseg_*`` keys): the input spec (``cmrseg_input_spec``: the normalisation, the slices and planes
the network reads and, for a model trained on volumes of known spacing, its plan, whose in-plane spacing each NIfTI slice is
resampled to (bilinear, pixel centres aligned, as cmrseg does) before the network and whose probabilities are resampled
back to the slice's own grid before the argmax), the label names and the class weights of the argmax. A NIfTI volume's intensities are first mapped from their 0.5-99.5th
percentile to 0-255 (8-bit volumes are taken as they are), as cmrseg reads volumes. This example predicts without test-time augmentation and without the
largest-component clean-up; the mask holds 0 background, 1 RV, 2 Myo, 3 LV.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

PHASE_VALUES = {"ED": -1.0, "ES": 1.0}


def normalize(image: np.ndarray, normalization: dict) -> np.ndarray:
    """The export's intensity normalisation of a uint8 image: per-image z-score or fitted mean/std of x/255."""
    scaled = image.astype(np.float32) / 255.0
    if normalization["mode"] == "per_image":
        return (scaled - scaled.mean()) / max(float(scaled.std()), 1e-6)
    return (scaled - normalization["mean"]) / normalization["std"]


def read_nifti_slice(path: str, index: int | None) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Slice ``index`` (default: the middle one) of a NIfTI volume as uint8, and its in-plane spacing in mm (None when
    the header names no spatial unit)."""
    import nibabel as nib

    volume = nib.load(path)
    data = np.asanyarray(volume.dataobj)
    if data.ndim != 3:
        sys.exit(f"{path}: expected a 3-D volume, got shape {data.shape}")
    index = data.shape[2] // 2 if index is None else index
    if not 0 <= index < data.shape[2]:
        sys.exit(f"{path}: --slice must be 0..{data.shape[2] - 1}, got {index}")
    unit = volume.header.get_xyzt_units()[0]
    zooms = volume.header.get_zooms()[:2]
    spacing = tuple(float(z) * {"mm": 1.0, "meter": 1000.0, "micron": 0.001}[unit] for z in zooms) \
        if unit in ("mm", "meter", "micron") else None
    if data.dtype == np.uint8:  # 8-bit volumes are taken as they are
        return np.ascontiguousarray(data[:, :, index]), spacing  # type: ignore[return-value]
    data = data.astype(np.float64)
    low, high = np.percentile(data, [0.5, 99.5])
    scaled = ((data[:, :, index] - low) / (high - low if high > low else 1.0)).clip(0.0, 1.0)
    return (scaled * 255).round().astype(np.uint8), spacing  # type: ignore[return-value]


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``H x W (x C)`` to ``shape`` with pixel centres aligned and edges replicated (OpenCV's
    INTER_LINEAR, which cmrseg uses); uint8 in, uint8 out (rounded)."""
    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        low = np.floor(x).astype(int)
        return low, np.minimum(low + 1, n_in - 1), (x - low)

    r0, r1, wr = axis(shape[0], image.shape[0])
    c0, c1, wc = axis(shape[1], image.shape[1])
    data = image.astype(np.float64)
    wr = wr.reshape(-1, 1, *([1] * (image.ndim - 2)))
    wc = wc.reshape(1, -1, *([1] * (image.ndim - 2)))
    rows = data[r0] * (1 - wr) + data[r1] * wr
    out = rows[:, c0] * (1 - wc) + rows[:, c1] * wc
    return out.round().clip(0, 255).astype(np.uint8) if image.dtype == np.uint8 else out.astype(image.dtype)


def input_spec(metadata: dict, prediction: dict) -> dict:
    """The model's input spec: ``cmrseg_input_spec``, or for an export made before it the loose keys."""
    if "cmrseg_input_spec" in metadata:
        return json.loads(metadata["cmrseg_input_spec"])
    return {"normalization": json.loads(metadata["cmrseg_normalization"]),
            "plan": json.loads(metadata.get("cmrseg_plan") or "null"),
            **{key: prediction.get(key) for key in ("context_slices", "other_phase", "conditions")}}


def segment(model_path: str, image_path: str, mask_path: str, index: int | None = None, phase: str | None = None) -> None:
    """Write the class mask (uint8 PNG) of ``image_path`` (a PNG, or slice ``index`` of a NIfTI volume of cardiac
    ``phase``) predicted by the ONNX model ``model_path``."""
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    if metadata.get("cmrseg_format") != "cmrseg-model":
        sys.exit(f"{model_path}: not a cmrseg ONNX export (no cmrseg metadata)")
    prediction = json.loads(metadata.get("cmrseg_prediction") or "{}")
    spec = input_spec(metadata, prediction)
    normalization, plan = spec["normalization"], spec.get("plan") or {}
    nifti = image_path.endswith((".nii", ".nii.gz"))
    if spec.get("context_slices"):
        sys.exit(f"{model_path}: a 2.5-D model (each slice with its neighbours); use cmrseg predict on the volume")
    if spec.get("other_phase"):
        sys.exit(f"{model_path}: a model that reads both phases (ED and ES) of each slice; use cmrseg predict")
    conditions = spec.get("conditions") or []
    if set(conditions) - {"phase"} or (conditions and (not nifti or phase not in PHASE_VALUES)):
        sys.exit(f"{model_path}: a model conditioned on {' and '.join(conditions)}; give a NIfTI volume with "
                 "--phase ED or ES (the slice position needs cmrseg predict)")
    weights = prediction.get("class_weights")
    if nifti:
        image, spacing = read_nifti_slice(image_path, index)
    else:
        image, spacing = np.asarray(Image.open(image_path).convert("L")), None
    target = plan.get("target_spacing")
    shape = image.shape
    if spacing is not None and target and any(abs(s / t - 1) > 0.01 for s, t in zip(spacing, target)):
        image = resize(image, (max(1, round(shape[0] * spacing[0] / target[0])),
                               max(1, round(shape[1] * spacing[1] / target[1]))))
    planes = [normalize(image, normalization)] + [np.full(image.shape, PHASE_VALUES[phase], np.float32)
                                                  for _ in conditions]
    batch = np.stack(planes)[None].astype(np.float32)
    scores = session.run(None, {session.get_inputs()[0].name: batch})[0][0]
    probs = np.exp(scores - scores.max(0, keepdims=True))
    probs /= probs.sum(0, keepdims=True)
    if probs.shape[1:] != shape:
        probs = resize(probs.transpose(1, 2, 0).astype(np.float32), shape).transpose(2, 0, 1)
    if weights is not None:
        probs = probs * np.asarray(weights, dtype=probs.dtype)[:, None, None]
    mask = probs.argmax(0).astype(np.uint8)
    Image.fromarray(mask).save(mask_path)
    labels = json.loads(metadata["cmrseg_labels"])
    counts = np.bincount(mask.ravel(), minlength=len(labels))
    print(", ".join(f"{name} {count} px" for name, count in zip(labels, counts)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Segment a PNG or one NIfTI slice with a cmrseg ONNX export.")
    parser.add_argument("model")
    parser.add_argument("image", help="a PNG, or a NIfTI volume (.nii / .nii.gz)")
    parser.add_argument("mask", help="the PNG mask to write")
    parser.add_argument("--slice", type=int, help="slice of a NIfTI volume (default: the middle one)")
    parser.add_argument("--phase", choices=sorted(PHASE_VALUES), help="cardiac phase of a NIfTI volume (phase models)")
    args = parser.parse_args()
    segment(args.model, args.image, args.mask, args.slice, args.phase)
