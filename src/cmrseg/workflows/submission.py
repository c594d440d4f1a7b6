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
from cmrseg.io.atomic import atomic_path


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


def _first_and_count(kind: str, names: list[str], hint: str) -> str:
    """``"3 rows are missing (first: 'x')"`` plus ``hint``."""
    return f"{len(names)} {kind} (first: '{names[0]}'){hint}"


def _read_rows(path: Path) -> list[tuple[int, str, str]]:
    """``(line, id, encoding)`` of every row, with one-line errors for a missing, non-UTF-8 or misshaped file."""
    if not path.is_file():
        raise CmrsegError(f"{path}: submission file not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or [f.strip() for f in reader.fieldnames] != ["id", "encoding"]:
                raise CmrsegError(f"{path}: expected header 'id,encoding', got {reader.fieldnames}")
            return [(line, row["id"] or "", row["encoding"] or "") for line, row in enumerate(reader, start=2)]
    except UnicodeDecodeError as err:
        raise CmrsegError(f"{path}: not a UTF-8 text file (byte {err.start}: {err.reason})") from None


def submit_folder(masks_dir: str | Path, out: str | Path) -> int:
    """Check ``out`` (a file outside ``masks_dir``), then encode every ``<id>_mask.png`` of ``masks_dir`` into it;
    returns the number of masks."""
    from cmrseg.data.readers.png import load_mask_folder
    from cmrseg.io.outputs import check_output_file

    check_output_file(out, inputs=[masks_dir])
    masks = load_mask_folder(masks_dir)
    write_submission(masks, out)
    return len(masks)


def read_submission(path: str | Path, shapes: Mapping[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Decode a complete submission CSV into class masks for the mask stems in ``shapes`` (stem -> (h, w))."""
    return decode_submission(path, shapes)[0]


def decode_submission(
    path: str | Path, shapes: Mapping[str, tuple[int, int]], allow_partial: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Decode a submission CSV into class masks for the mask stems in ``shapes`` (stem -> (h, w)).

    Refused with one line naming the first offender and the count: a duplicated id, an id whose mask
    is not in ``shapes`` (unknown id, or a masks folder lacking it), a mask with a missing row. With
    ``allow_partial`` unknown rows are skipped and only masks with all their rows are returned; the
    second value counts ``masks``, ``missing_masks``, ``missing_rows`` and ``unknown_rows``.
    """
    path = Path(path)
    rows = _read_rows(path)
    seen: dict[str, int] = {}
    duplicated, unknown = [], []
    decoded: dict[str, dict[int, np.ndarray]] = {stem: {} for stem in shapes}
    for line, row_id, encoding in rows:
        match = re.fullmatch(r"(.+?)(\d)", row_id)
        if not match or not 1 <= int(match.group(2)) < NUM_CLASSES:
            raise CmrsegError(f"{path}:{line}: bad id '{row_id}', expected <mask stem><class 1-{NUM_CLASSES - 1}>")
        if row_id in seen:
            duplicated.append(f"{row_id}' on lines {seen[row_id]} and {line}")
            continue
        seen[row_id] = line
        stem, label = match.group(1), int(match.group(2))
        if stem not in shapes:
            unknown.append(row_id)
            continue
        try:
            decoded[stem][label] = rle_decode(encoding, shapes[stem])
        except ValueError as err:
            raise CmrsegError(f"{path}:{line}: bad encoding for '{row_id}': {err}") from None
    if duplicated:
        raise CmrsegError(f"{path}: {len(duplicated)} duplicated ids (first: '{duplicated[0]})")
    missing = [f"{stem}{label}" for stem in shapes for label in range(1, NUM_CLASSES) if label not in decoded[stem]]
    hint = "; pass --allow-partial to score only the complete masks"
    if unknown and not allow_partial:
        raise CmrsegError(f"{path}: {_first_and_count('row ids have no true mask', unknown, hint)}")
    if missing and not allow_partial:
        raise CmrsegError(f"{path}: {_first_and_count('rows are missing', missing, hint)}")
    masks = {}
    for stem, labels in decoded.items():
        if len(labels) == NUM_CLASSES - 1:
            mask = np.zeros(shapes[stem], dtype=np.uint8)
            for label, region in labels.items():
                mask[region] = label
            masks[stem] = mask
    if not masks:
        raise CmrsegError(f"{path}: no mask has all its {NUM_CLASSES - 1} rows; nothing to score")
    counts = {"masks": len(shapes), "missing_masks": len(shapes) - len(masks), "missing_rows": len(missing),
              "unknown_rows": len(unknown)}
    return masks, counts
