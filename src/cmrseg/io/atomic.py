"""Atomic file writes (text, JSON, CSV, torch): a file is whole or absent, never half-written; JSON results
written one way (undefined numbers as ``null``)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch



TEMP_TAG = ".cmrseg-tmp-"

_CLAIMED: set[Path] = set()
"""Single output files checked by :func:`check_output_file` in this process, recorded once written."""

NAME_MAX = 255
"""Bytes in a file name on common file systems (ext4, APFS, NTFS)."""

_TEMP_ROOM = 48
"""Bytes a temporary name adds to its stand-in's: the dot, tag, pid, random part and a short suffix."""


def temp_stem(name: str) -> str:
    """``name`` cut (at a character boundary) so that a temporary standing in for it fits :data:`NAME_MAX` bytes."""
    return name.encode()[: NAME_MAX - _TEMP_ROOM].decode(errors="ignore")


def temp_prefix(name: str) -> str:
    """Prefix of a temporary file or folder standing in for ``name`` while this process writes it; a long
    ``name`` is cut so that the whole temporary name fits the file system's 255-byte limit."""
    return f".{temp_stem(name)}{TEMP_TAG}{os.getpid()}-"


def written_files(folder: Path) -> set[str]:
    """Names of the single files cmrseg wrote in ``folder`` (its ``.cmrseg-files.json``; empty when absent or broken)."""
    try:
        names = json.loads((folder / FILES_LEDGER).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {str(name) for name in names} if isinstance(names, list) else set()


def claim(path: Path) -> None:
    """Mark the single output file ``path`` as cleared to be written (:func:`cmrseg.io.outputs.check_output_file`),
    so that :func:`record_written` lists it once it is written."""
    _CLAIMED.add(path.resolve())


def record_written(path: Path) -> None:
    """List ``path`` in its folder's ``.cmrseg-files.json`` if :func:`check_output_file` cleared it (else nothing)."""
    if path.resolve() not in _CLAIMED:
        return
    ledger = path.parent / FILES_LEDGER
    tmp = ledger.with_name(f"{temp_prefix(FILES_LEDGER)}ledger")
    tmp.write_text(json.dumps({"files": sorted(written_files(path.parent) | {path.name})}, indent=1) + "\n")
    os.replace(tmp, ledger)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    A crash or Ctrl-C inside the block never leaves a half-written file behind; a ``kill -9`` leaves
    a temporary that :func:`cmrseg.io.outputs.clean_stale_temps` removes at the next start.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=target.suffix[:16] or ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, target)
        record_written(target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    """The process umask (read by setting and restoring it), so atomic writes get normal file modes."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON (:func:`json_text`) to ``path`` through a temporary file."""
    write_text_atomic(path, json_text(data) + "\n")


def json_text(data: Any, indent: int | None = 2) -> str:
    """``data`` as valid JSON: an undefined number (NaN, infinity, also NumPy's) is ``null``, never the bare
    ``NaN`` that strict readers refuse; the one way cmrseg writes JSON results."""
    return json.dumps(_defined(data), indent=indent, default=_json_default, allow_nan=False)


def _defined(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in dicts, lists, tuples, arrays) replaced by None."""
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return _defined(value.tolist())
    if isinstance(value, Mapping):
        return {key: _defined(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_defined(item) for item in value]
    return value


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV with a header of ``columns``; keys a row lacks are empty cells, keys not in ``columns`` are left out."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv_atomic(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Write :func:`csv_text` of ``rows`` to ``path`` through a temporary file."""
    write_text_atomic(path, csv_text(rows, columns))


def torch_save_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` through a temporary file, so a checkpoint is either whole or absent."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


FILES_LEDGER = ".cmrseg-files.json"
