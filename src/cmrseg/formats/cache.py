"""The local cache of unpacked exports and exported graphs (``$CMRSEG_CACHE``): folders filled whole or not
at all, whose files' sizes and sha256 are recorded and checked before every use."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cmrseg.errors import CmrsegError
from cmrseg.io.outputs import temp_prefix


CACHE_RECORD = ".cmrseg-cache.json"
"""In each cache folder: the size and sha256 of every file, checked before every use."""


def cache_root() -> Path:
    """Where export zips are unpacked: ``$CMRSEG_CACHE`` or ``~/.cache/cmrseg/exports``."""
    return Path(os.environ.get("CMRSEG_CACHE") or Path.home() / ".cache" / "cmrseg" / "exports")


def writable_cache_root() -> Path:
    """:func:`cache_root`, created if missing, or one line naming ``$CMRSEG_CACHE`` when it is a file, lies under
    a file or is not writable."""
    root = cache_root()
    where = f"the export cache {root} ($CMRSEG_CACHE)"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CmrsegError(f"{where}: is a file, expected a folder; set CMRSEG_CACHE to a writable folder") from None
    except OSError as err:
        raise CmrsegError(f"{where}: cannot be created ({err.strerror}); set CMRSEG_CACHE to a writable folder") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise CmrsegError(f"{where}: is not writable; set CMRSEG_CACHE to a writable folder")
    return root


def file_record(path: Path) -> dict[str, Any]:
    """Size and sha256 of a file, as the cache records and verifies it."""
    data = path.read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def cache_changes(folder: Path, names: list[str]) -> str | None:
    """What differs between the files ``names`` of a cache folder and its :data:`CACHE_RECORD` (sizes first, then
    sha256), or None when they match: the check of a cached file before every use."""
    try:
        recorded = json.loads((folder / CACHE_RECORD).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return f"no readable {CACHE_RECORD}"
    for name in names:
        path, expected = folder / name, recorded.get(name) if isinstance(recorded, dict) else None
        if not isinstance(expected, dict) or not path.is_file() or path.is_symlink():
            return f"{name} missing or not recorded"
        if path.stat().st_size != expected.get("size") or file_record(path) != expected:
            return f"{name} changed since it was unpacked"
    return None


def write_cache_record(folder: Path, names: list[str]) -> None:
    """Record the size and sha256 of the files ``names`` of a cache folder (:func:`cache_changes` checks them)."""
    record = {"files": {name: file_record(folder / name) for name in names}}
    (folder / CACHE_RECORD).write_text(json.dumps(record, indent=1) + "\n")


def fill_cache(target: Path, write: Callable[[Path], list[str]]) -> None:
    """(Re)build the cache folder ``target``: ``write`` fills a temporary folder beside it and returns the names it
    wrote, whose sizes and sha256 are recorded (:data:`CACHE_RECORD`); the folder is then renamed into place and
    the one it replaces removed, so a reader sees a whole entry or none."""
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), dir=target.parent))
    old = target.with_name(f"{temp_prefix(target.name)}old")
    try:
        write_cache_record(tmp, write(tmp))
        with contextlib.suppress(OSError):
            if target.exists():
                target.rename(old)
            tmp.rename(target)
    except OSError as err:
        raise CmrsegError(f"{target}: could not write the cache entry ({err.strerror or err})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
