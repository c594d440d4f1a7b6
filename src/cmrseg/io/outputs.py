"""Output-path safety: every command checks where it writes before any work, and never deletes what it did not write.

An output folder carries a marker file, ``.cmrseg-output.json``, naming the command that wrote it and
the files it owns. An existing non-empty folder is accepted only when its marker names the same
command (a previous output, which is brought up to date) or with ``overwrite``; even then cmrseg
replaces only its own files and refuses to write over a file it did not write. Outputs are built in a
temporary folder beside the target and moved into place file by file (temp + rename), so a crash
never leaves a half-written file. Temporary files and folders carry ``.cmrseg-tmp-<pid>-`` in their
name; those of dead processes are removed at the next start of a command writing there.

A single output file (a submission, ``--json``, an export, a report, ``indices`` tables) may replace
only a file that cmrseg wrote: each folder where cmrseg wrote such files lists them in ``.cmrseg-files.json``,
and an existing file not listed there is refused.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from cmrseg.errors import CmrsegError
from cmrseg.io.atomic import FILES_LEDGER, TEMP_TAG, claim, temp_prefix, temp_stem, write_json_atomic, written_files

MARKER_FILE = ".cmrseg-output.json"
LOCK_FILE = ".cmrseg.lock"
_TEMP_PID = re.compile(re.escape(TEMP_TAG) + r"(\d+)-")
_BOOKKEEPING = (MARKER_FILE, LOCK_FILE, FILES_LEDGER)

PathLike = str | os.PathLike[str]


def _is_temp(path: Path) -> bool:
    return path.name.startswith(".") and TEMP_TAG in path.name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(path: Path) -> bool:
    """A cmrseg temporary whose writer has died (a file or folder left by a crash or ``kill -9``)."""
    match = _TEMP_PID.search(path.name)
    return bool(match) and _is_temp(path) and not _alive(int(match.group(1)))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale_temps(folder: Path, name: str | None = None) -> None:
    """Remove dead processes' temporaries under ``folder`` (or only those for ``name`` directly in it)."""
    if not folder.is_dir():
        return
    candidates = (folder.glob(f".{glob.escape(temp_stem(name))}{TEMP_TAG}*") if name is not None
                  else folder.rglob(f".*{TEMP_TAG}*"))
    for path in list(candidates):
        if _stale(path):
            _remove(path)


def _relative_to(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def _check_location(path: Path, inputs: Iterable[PathLike]) -> None:
    """Refuse an output inside (or equal to) an input, under a file, or in an unwritable place."""
    resolved = path.resolve()
    for item in inputs:
        source = Path(item).resolve()
        if _relative_to(resolved, source):
            where = "is" if resolved == source else "lies inside"
            raise CmrsegError(f"{path}: the output {where} the input {item}; choose an output outside it")
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise CmrsegError(f"{path}: cannot write here, {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise CmrsegError(f"{path}: cannot write here, {ancestor} is not writable")


def read_marker(folder: Path) -> dict[str, object] | None:
    """The marker of an output folder, or None when it has none (or an unreadable one)."""
    try:
        data = json.loads((folder / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def inside(folder: PathLike, name: object, source: PathLike) -> Path:
    """``folder / name`` for a relative ``name`` read from the file ``source`` (an output marker, an export
    manifest, a zip member), or a one-line error when it is not a string, empty, absolute, has a ``..`` part
    or leads outside ``folder`` through a link: a name read from a file is never trusted as a path."""
    text = name if isinstance(name, str) else ""
    if (not text or "\\" in text or "\0" in text or PurePosixPath(text).is_absolute()
            or any(part in ("..", ".") for part in text.split("/"))):
        raise CmrsegError(f"{source}: lists {name!r}, expected a plain relative name inside {folder} "
                          "(not written by cmrseg, or altered; refused, nothing deleted)")
    path = Path(folder) / text
    if not _relative_to(path.resolve(), Path(folder).resolve()):
        raise CmrsegError(f"{source}: lists {name!r}, which leads outside {folder} through a link (refused, nothing deleted)")
    return path


def _owned(folder: Path, command: str) -> set[str]:
    """Files that an earlier run of ``command`` wrote into ``folder`` (by its marker); every name is checked to
    lie inside ``folder`` (:func:`inside`), since cmrseg replaces and removes them."""
    marker = read_marker(folder) or {}
    files = marker.get("files", []) if marker.get("command") == command else []
    if not isinstance(files, list):
        return set()
    for name in files:
        inside(folder, name, folder / MARKER_FILE)
    return set(files)


def _contents(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name not in _BOOKKEEPING and not _is_temp(p)]


def check_output_dir(
    path: PathLike,
    command: str,
    overwrite: bool = False,
    inputs: Iterable[PathLike] = (),
    files: Sequence[str] = (),
    legacy: Sequence[str] = (),
) -> Path:
    """Check that ``command`` may write the folder ``path``; create its parents and clean stale temporaries.

    ``files`` are the relative names the command will write (checked for clashes with foreign files
    when known); ``legacy`` are glob patterns of files that mark a previous output written before markers existed.
    """
    path = Path(path)
    _check_location(path, inputs)
    if path.exists() and not path.is_dir():
        raise CmrsegError(f"{path}: exists and is a file, expected a folder")
    if path.is_dir():
        clean_stale_temps(path)
        contents = _contents(path)
        marker = read_marker(path)
        previous = (marker is not None and marker.get("command") == command) or (
            marker is None and any(next(path.glob(pattern), None) for pattern in legacy))
        if contents and not previous and not overwrite:
            raise CmrsegError(f"{path}: folder is not empty and is not an output of 'cmrseg {command}'; "
                              "choose another folder or overwrite it (files cmrseg did not write are kept)", key="overwrite")
        check_clashes(path, command, files)
    clean_stale_temps(path.parent, path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def check_clashes(folder: Path, command: str, files: Iterable[str]) -> None:
    """Refuse to write over an existing file of ``folder`` that an earlier ``command`` did not write."""
    owned = _owned(folder, command)
    foreign = [name for name in files if (folder / name).exists() and name not in owned]
    if foreign:
        raise CmrsegError(f"{folder / foreign[0]}: exists and was not written by cmrseg {command} "
                          f"({len(foreign)} such file(s)); move them away or choose another folder")


def check_output_file(path: PathLike, inputs: Iterable[PathLike] = ()) -> Path:
    """Check that the file ``path`` may be written: new, or one cmrseg wrote (never a file it did not write);
    create its parents and clean stale temporaries. Once written (:func:`record_written`) it is listed as cmrseg's."""
    path = Path(path)
    _check_location(path, inputs)
    if path.is_dir():
        raise CmrsegError(f"{path}: exists and is a folder, expected a file")
    if path.exists() and path.name not in written_files(path.parent):
        raise CmrsegError(f"{path}: exists and was not written by cmrseg; move it away or choose another path")
    clean_stale_temps(path.parent, path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    claim(path)
    return path


def write_marker(folder: Path, command: str, files: Iterable[str] = ()) -> None:
    """Mark ``folder`` as the output of ``command``, owning ``files`` (relative names)."""
    write_json_atomic(folder / MARKER_FILE, {"command": command, "files": sorted(set(files))})


def publish(tmp: Path, target: Path, command: str, keep_owned: bool = False) -> list[str]:
    """Move every file of the temporary folder ``tmp`` into ``target`` one by one (rename each); returns their names.

    Files that an earlier run of ``command`` wrote there but this one did not are removed (:func:`prune`), so the
    folder's cmrseg files are exactly the new output; any other file is left alone. With ``keep_owned`` they are
    kept and the new files are added to them: an output published piece by piece (a cohort, volume by volume).
    """
    new = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
    target.mkdir(parents=True, exist_ok=True)
    check_clashes(target, command, new)
    write_marker(target, command, _owned(target, command) | set(new))
    for name in new:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / name, destination)
    if not keep_owned:
        prune(target, command, new)
    return new


def prune(target: Path, command: str, keep: Iterable[str]) -> None:
    """Remove the files an earlier run of ``command`` wrote in ``target``, except ``keep``, which the marker then
    lists as its own; files cmrseg did not write are left alone."""
    keep = set(keep)
    for name in sorted(_owned(target, command) - keep):
        stale = inside(target, name, target / MARKER_FILE)
        if not stale.is_dir() or stale.is_symlink():
            stale.unlink(missing_ok=True)
    write_marker(target, command, keep)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], command: str, keep_owned: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; if the block succeeds its files are moved into ``target``
    one by one (:func:`publish`, with ``keep_owned``), replacing only files that ``command`` wrote before."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), dir=target.parent))
    try:
        yield tmp
        publish(tmp, target, command, keep_owned)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_if_unused(folder: Path, command: str) -> None:
    """Remove ``folder`` if it holds nothing but a marker of ``command`` that lists no file: an output folder this
    process created and then wrote nothing into (its first piece failed), so a failed command leaves no trace."""
    if not folder.is_dir() or (read_marker(folder) or {}).get("command") != command or _owned(folder, command):
        return
    if {path.name for path in folder.iterdir()} <= {MARKER_FILE}:
        (folder / MARKER_FILE).unlink(missing_ok=True)
        folder.rmdir()
