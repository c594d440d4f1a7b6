"""The export zip: a run's files with a manifest (format, version, labels, prediction settings, file list),
bounded and checked before anything is inflated, unpacked once into the cache (:mod:`cmrseg.formats.cache`).

The zip holds what prediction needs and nothing else::

    cmrseg_export.json   format name and version, label names, prediction settings, file list
    config.json          the run's resolved config (model, TTA, post-processing, data, seed)
    normalization.json   intensity normalisation fitted on the training split
    data.json            what it was trained on (counts, voxel spacing), when the run has one
    plan.json            the spacing, patch and batch it trained and predicts at, when the run has one
    best.pt              the weights only (no optimiser state)
    history.csv          the run's per-epoch metrics, when it has them
    qc_model.json        the run's calibrated QC estimate (``cmrseg qc calibrate``), when it has one
    model_card.json      architecture, parameters, data, date, commit, metrics, intended use
    MODEL_CARD.md        the same, for people

Every command that takes a run folder takes the zip: it is checked and unpacked once into a cache
folder (``$CMRSEG_CACHE``, default ``~/.cache/cmrseg/exports/<hash>``) that then serves as the run folder
(:func:`cmrseg.runs.require_run_dir`). Output markers and locks of the run folder are not exported.
The entry records the size and sha256 of each file and is verified before every use (a changed entry is
unpacked again); zips are bounded before anything is inflated (:func:`check_zip_bounds`).
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cmrseg.constants import VERSION
from cmrseg.constants import CLASS_NAMES
from cmrseg.errors import CmrsegError
from cmrseg.formats.cache import CACHE_RECORD, cache_changes, cache_root, fill_cache, writable_cache_root
from cmrseg.formats.version import FORMAT, FORMAT_VERSION, check_format_version
from cmrseg.io.outputs import inside

MANIFEST_FILE = "cmrseg_export.json"
MAX_MEMBERS = 64
MAX_MEMBER_BYTES = 2 * 1024**3
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_RATIO = 100
RATIO_FLOOR = 1024**2
"""Bounds on an export zip, checked before inflating: members, uncompressed bytes per member and in all, and the
inflation ratio of a member above ``RATIO_FLOOR`` bytes (weights inflate about 1.1x, JSON about 5x)."""


def write_bundle(path: Path, files: Mapping[str, bytes], settings: dict[str, Any]) -> None:
    """Write the zip ``path``: the manifest (format, version, labels, the prediction ``settings``, the file list)
    and ``files`` (name to content); the caller writes to a temporary path (:func:`cmrseg.io.atomic.atomic_path`)."""
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "cmrseg_version": VERSION,
                "labels": list(CLASS_NAMES), "prediction": settings, "files": sorted(files)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
        for name, data in files.items():
            archive.writestr(name, data)


def read_manifest(path: Path, required: Iterable[str] = ()) -> dict[str, Any]:
    """The checked manifest of an export zip that holds the files ``required`` and every file its manifest lists;
    one-line errors for a corrupt, foreign, incomplete or too new file."""
    if path.suffix.lower() == ".onnx":
        raise CmrsegError(f"{path}: an ONNX graph holds no run config; use the zip export here, or predict/evaluate "
                          "it with --engine onnxruntime")
    if not zipfile.is_zipfile(path):
        raise CmrsegError(f"{path}: not a zip file (corrupt, truncated or another format); expected a cmrseg export")
    try:
        with zipfile.ZipFile(path) as archive:
            if MANIFEST_FILE not in archive.namelist():
                raise CmrsegError(f"{path}: not a cmrseg model export (no {MANIFEST_FILE}); make one with 'cmrseg export'")
            check_zip_bounds(path, archive)
            bad = archive.testzip()
            if bad is not None:
                raise CmrsegError(f"{path}: corrupt zip (bad checksum in {bad})")
            manifest = json.loads(archive.read(MANIFEST_FILE))
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:  # zlib: damaged deflate data before its CRC
        raise CmrsegError(f"{path}: corrupt zip ({err})") from None
    except json.JSONDecodeError:
        raise CmrsegError(f"{path}: not a cmrseg model export ({MANIFEST_FILE} is not valid JSON)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CmrsegError(f"{path}: not a cmrseg model export ({MANIFEST_FILE} does not say format '{FORMAT}')")
    check_format_version(manifest.get("format_version"), str(path))
    files = manifest.get("files")
    if not isinstance(files, list):
        raise CmrsegError(f"{path}: not a cmrseg model export (bad file list in {MANIFEST_FILE})")
    for name in files:  # plain names of the export's top folder; unpacking checks them again (outputs.inside)
        plain = isinstance(name, str) and bool(name) and Path(name).name == name and "\\" not in name
        if not plain or name in (".", "..", CACHE_RECORD):
            raise CmrsegError(f"{path}: not a cmrseg model export ({MANIFEST_FILE} lists {name!r}, expected a plain "
                              "file name)")
    missing = sorted({*required, *files} - names)
    if missing:
        raise CmrsegError(f"{path}: incomplete cmrseg export (missing {', '.join(missing)})")
    return manifest


def check_zip_bounds(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse, from the zip's directory and before anything is inflated, a zip with more than
    :data:`MAX_MEMBERS` members, a member above :data:`MAX_MEMBER_BYTES` or a total above :data:`MAX_TOTAL_BYTES`
    uncompressed, or a member above 1 MiB that inflates more than :data:`MAX_RATIO` times (a zip bomb). Reading
    stops at the declared sizes (zipfile checks them with the CRC), so these bound memory and disk."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CmrsegError(f"{path}: {len(infos)} zip members, a cmrseg export has at most {MAX_MEMBERS}")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > MAX_MEMBER_BYTES or (info.file_size > RATIO_FLOOR and ratio > MAX_RATIO):
            raise CmrsegError(f"{path}: member {info.filename} inflates to {info.file_size:,} bytes ({ratio:.0f}x); "
                              f"a cmrseg export member is at most {MAX_MEMBER_BYTES:,} bytes and {MAX_RATIO}x")
    total = sum(info.file_size for info in infos)
    if total > MAX_TOTAL_BYTES:
        raise CmrsegError(f"{path}: inflates to {total:,} bytes, a cmrseg export is at most {MAX_TOTAL_BYTES:,}")


def cache_entry(path: str | Path) -> Path:
    """The cache folder an export zip unpacks to (keyed by its content hash; not created here)."""
    return cache_root() / hashlib.sha256(Path(path).read_bytes()).hexdigest()[:20]


def unpack_export(path: str | Path, required: Iterable[str] = ()) -> Path:
    """Check an export zip (:func:`read_manifest`, holding ``required``) and unpack it once (keyed by its content
    hash); returns the unpacked folder (a run folder: :func:`cmrseg.runs.require_run_dir`).

    The entry's files are verified on every use against the sizes and sha256 recorded when it was unpacked
    (:func:`cache_changes`); an entry that differs (a file replaced, removed or truncated) is unpacked again
    from the zip, with a warning that says what changed. The files are written to a temporary folder beside the
    cache entry, which is then renamed into place, so a crash never leaves a half-unpacked run; a concurrent
    unpack of the same zip wins or loses whole."""
    path = Path(path)
    manifest = read_manifest(path, required)
    names = [*manifest["files"], MANIFEST_FILE]
    target = writable_cache_root() / cache_entry(path).name
    if not target.exists():
        _unpack(path, names, target)
    elif (change := cache_changes(target, names)) is not None:
        warnings.warn(f"{target}: {change}; unpacked {path} again", stacklevel=2)
        _unpack(path, names, target)
    if not target.is_dir() or cache_changes(target, names) is not None:
        raise CmrsegError(f"{target}: could not unpack {path} into the cache; check that {cache_root()} is writable")
    return target


def _unpack(path: Path, names: list[str], target: Path) -> None:
    """Unpack the members ``names`` of the zip ``path`` into the cache folder ``target`` (:func:`fill_cache`)."""

    def write(tmp: Path) -> list[str]:
        with zipfile.ZipFile(path) as archive:
            for name in names:
                inside(tmp, name, path).write_bytes(archive.read(name))
        return names

    try:
        fill_cache(target, write)
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise CmrsegError(f"{path}: could not unpack into {target} ({err})") from None
