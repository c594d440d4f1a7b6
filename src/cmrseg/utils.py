"""Small shared helpers: atomic file writes (text, JSON, CSV, torch), seeding, device choice and run metadata."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmrseg.outputs import publish, record_written, temp_prefix


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    A crash or Ctrl-C inside the block never leaves a half-written file behind; a ``kill -9`` leaves
    a temporary that :func:`cmrseg.outputs.clean_stale_temps` removes at the next start.
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


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], command: str) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; if the block succeeds its files are moved into ``target``
    one by one (:func:`cmrseg.outputs.publish`), replacing only files that ``command`` wrote before."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), dir=target.parent))
    try:
        yield tmp
        publish(tmp, target, command)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a run is repeatable on the same device."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def precision_autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context of a ``precision`` (``float32`` or ``bfloat16``) on ``device``: one rule for training
    and prediction, so both run the network in the same arithmetic when asked for the same precision."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def resolve_device(name: str = "auto") -> torch.device:
    """Pick CUDA when present for ``auto``; otherwise honour an explicit ``cpu``/``cuda[:N]``/``mps``."""
    from cmrseg.errors import CmrsegError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise CmrsegError(f"device '{name}': expected auto, cpu, cuda, cuda:N or mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CmrsegError(f"device '{name}' was requested but CUDA is not available on this machine")
    return torch.device(name)


def run_metadata(repo: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Where a number was measured: the git commit of ``repo`` (``-dirty`` with uncommitted changes), date, machine."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=repo or Path.cwd(), capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = "-dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
    return {
        "commit": commit + dirty,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPU cores, "
                   f"Python {platform.python_version()}, torch {torch.__version__}",
    }


def write_results(path: str | os.PathLike[str], results: Mapping[str, Any], append: bool = False) -> Path:
    """Write ``results`` with :func:`run_metadata` (of the folder ``path`` is in) as JSON, or as one more line
    of a JSON-lines file with ``append``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"measured": run_metadata(path.parent), **results}
    if append:
        with path.open("a") as handle:
            handle.write(json_text(record, indent=None) + "\n")
    else:
        write_json_atomic(path, record)
    return path
