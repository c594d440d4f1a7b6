"""Small shared helpers: seeding, device choice, autocast, quieting a library's logger and run metadata (atomic
writers: :mod:`cmrseg.io.atomic`)."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import random
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmrseg.io.atomic import json_text, write_json_atomic


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a run is repeatable on the same device."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@contextlib.contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Only errors from the logger ``name`` (a library's chatter that says nothing to a cmrseg user) while inside."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


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
