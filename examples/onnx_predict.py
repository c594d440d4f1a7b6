"""Segment one PNG with a cmrseg ONNX export, using only numpy, onnxruntime and pillow (no cmrseg, no torch).

    pip install numpy onnxruntime pillow
    python examples/onnx_predict.py model.onnx slice.png slice_mask.png

The graph takes the normalised image (N x 1 x H x W float32) and returns scores whose argmax over the
classes is the mask. The normalisation, the label names and the class weights of the argmax come from
the model's metadata (``cmrseg_*`` keys). This example predicts without test-time augmentation and
without the largest-component clean-up; the mask holds 0 background, 1 RV, 2 Myo, 3 LV.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def normalize(image: np.ndarray, normalization: dict) -> np.ndarray:
    """The export's intensity normalisation of a uint8 image: per-image z-score or fitted mean/std of x/255."""
    scaled = image.astype(np.float32) / 255.0
    if normalization["mode"] == "per_image":
        return (scaled - scaled.mean()) / max(float(scaled.std()), 1e-6)
    return (scaled - normalization["mean"]) / normalization["std"]


def segment(model_path: str, image_path: str, mask_path: str) -> None:
    """Write the class mask (uint8 PNG) of ``image_path`` predicted by the ONNX model ``model_path``."""
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    if metadata.get("cmrseg_format") != "cmrseg-model":
        sys.exit(f"{model_path}: not a cmrseg ONNX export (no cmrseg metadata)")
    normalization = json.loads(metadata["cmrseg_normalization"])
    prediction = json.loads(metadata.get("cmrseg_prediction") or "{}")
    if prediction.get("context_slices"):
        sys.exit(f"{model_path}: a 2.5-D model (each slice with its neighbours); it segments volumes, not one PNG")
    if prediction.get("other_phase"):
        sys.exit(f"{model_path}: a model that reads both phases (ED and ES) of each slice; it segments volumes, not one PNG")
    if prediction.get("conditions"):
        sys.exit(f"{model_path}: a model conditioned on {' and '.join(prediction['conditions'])}; it segments volumes, "
                 "not one PNG")
    weights = prediction.get("class_weights")
    image = np.asarray(Image.open(image_path).convert("L"))
    batch = normalize(image, normalization)[None, None].astype(np.float32)
    scores = session.run(None, {session.get_inputs()[0].name: batch})[0][0]
    probs = np.exp(scores - scores.max(0, keepdims=True))
    probs /= probs.sum(0, keepdims=True)
    if weights is not None:
        probs = probs * np.asarray(weights, dtype=probs.dtype)[:, None, None]
    Image.fromarray(probs.argmax(0).astype(np.uint8)).save(mask_path)
    labels = json.loads(metadata["cmrseg_labels"])
    counts = np.bincount(probs.argmax(0).ravel(), minlength=len(labels))
    print(", ".join(f"{name} {count} px" for name, count in zip(labels, counts)))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python onnx_predict.py MODEL.onnx IMAGE.png MASK.png")
    segment(*sys.argv[1:])
