"""One writer per run folder: an ``fcntl.flock`` on ``FOLDER/.cmrseg.lock`` that holds the writer's pid and command.

The kernel releases a flock when its process dies, so a lock file left by a killed process is simply
taken over by the next command; the file is removed when the lock is released normally.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from cmrseg.errors import CmrsegError
from cmrseg.io.outputs import LOCK_FILE


def _holder(fd: int) -> str:
    """Who holds the lock, as written in the lock file (``pid N, cmrseg train``)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {int(data['pid'])}, cmrseg {data['command']}"
    except (ValueError, KeyError, TypeError, OSError):
        return "another process"


def _acquire(path: Path, what: str) -> int:
    """Open and lock ``path`` (retrying if another process removed it meanwhile); return its descriptor."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise CmrsegError(f"{path.parent}: in use by {holder}; wait for it to finish or choose another folder "
                              f"(cmrseg {what} refused)") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold the lock of ``folder`` (created if missing) while ``cmrseg what`` writes it; refuse a second writer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = _acquire(path, what)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": what}).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
