"""From probabilities to class masks: the weighted argmax and the largest-component clean-up."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage

from cmrseg.constants import NUM_CLASSES


def to_mask(probs: np.ndarray, class_weights: Sequence[float] | None = None) -> np.ndarray:
    """Class mask (uint8) of ``C x ...`` probabilities (a slice or a volume): the argmax, after scaling class c
    by ``class_weights[c]``."""
    if class_weights is not None:
        probs = probs * np.asarray(class_weights, dtype=probs.dtype).reshape(-1, *[1] * (probs.ndim - 1))
    return probs.argmax(0).astype(np.uint8)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep only the largest connected component of each structure; dropped pixels become background."""
    cleaned = mask.copy()
    for label in range(1, NUM_CLASSES):
        components, count = ndimage.label(mask == label)
        if count > 1:
            sizes = ndimage.sum_labels(np.ones_like(mask), components, index=range(1, count + 1))
            cleaned[(components > 0) & (components != int(np.argmax(sizes)) + 1)] = 0
    return cleaned


def to_masks(probs: Iterable[np.ndarray], class_weights: Sequence[float] | None = None,
             largest: bool = False) -> list[np.ndarray]:
    """Class masks of probability maps (weighted argmax), with ``largest`` cleaned to one component per structure."""
    masks = [to_mask(p, class_weights) for p in probs]
    return [largest_component(mask) for mask in masks] if largest else masks
