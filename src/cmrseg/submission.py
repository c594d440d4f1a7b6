"""Kaggle run-length encoding of the origin study's competition, and its inverse.

One CSV row per mask and class 1..3: ``id`` is ``<mask stem><class>`` (``cmr121_mask1``), ``encoding``
lists ``start length`` pairs over pixels numbered from 1 in column-major order, empty when absent.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cmrseg.constants import NUM_CLASSES
from cmrseg.errors import CmrsegError
from cmrseg.utils import atomic_path


def rle_encode(binary: np.ndarray) -> str:
    """Run-length encode a boolean mask, column-major, 1-based: ``"start length start length ..."``."""
    pixels = np.concatenate([[0], binary.flatten(order="F").astype(np.int8), [0]])
    changes = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    starts, ends = changes[0::2], changes[1::2]
    return " ".join(f"{start} {end - start}" for start, end in zip(starts, ends))


def rle_decode(encoding: str, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`rle_encode` for an image of ``shape`` (height, width)."""
    flat = np.zeros(shape[0] * shape[1], dtype=bool)
    numbers = encoding.split()
    if len(numbers) % 2:
        raise ValueError("odd number of values")
    for start, length in zip(map(int, numbers[0::2]), map(int, numbers[1::2])):
        if start < 1 or length < 0 or start - 1 + length > flat.size:
            raise ValueError(f"run {start} {length} lies outside a {shape[0]}x{shape[1]} image")
        flat[start - 1 : start - 1 + length] = True
    return flat.reshape(shape, order="F")


def encode_masks(masks: Mapping[str, np.ndarray]) -> list[tuple[str, str]]:
    """Rows ``(id, encoding)`` for each mask stem and class 1..3."""
    return [(f"{stem}{label}", rle_encode(mask == label)) for stem, mask in masks.items() for label in range(1, NUM_CLASSES)]


def write_submission(masks: Mapping[str, np.ndarray], out: str | Path) -> Path:
    """Write the submission CSV atomically; returns its path."""
    out = Path(out)
    with atomic_path(out) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "encoding"])
        writer.writerows(encode_masks(masks))
    return out


def read_submission(path: str | Path, shapes: Mapping[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Decode a submission CSV into class masks, for the mask stems in ``shapes`` (stem -> (h, w))."""
    path = Path(path)
    if not path.is_file():
        raise CmrsegError(f"{path}: submission file not found")
    masks = {stem: np.zeros(shape, dtype=np.uint8) for stem, shape in shapes.items()}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or [f.strip() for f in reader.fieldnames] != ["id", "encoding"]:
            raise CmrsegError(f"{path}: expected header 'id,encoding', got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            match = re.fullmatch(r"(.+?)(\d)", row["id"] or "")
            if not match or not 1 <= int(match.group(2)) < NUM_CLASSES:
                raise CmrsegError(f"{path}:{line}: bad id '{row['id']}', expected <mask stem><class 1-{NUM_CLASSES - 1}>")
            stem, label = match.group(1), int(match.group(2))
            if stem not in masks:
                continue
            try:
                masks[stem][rle_decode(row["encoding"] or "", shapes[stem])] = label
            except ValueError as err:
                raise CmrsegError(f"{path}:{line}: bad encoding for '{row['id']}': {err}") from None
    return masks
