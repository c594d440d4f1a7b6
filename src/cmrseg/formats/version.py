"""The name and version of cmrseg's model formats (the export zip and the ONNX metadata share them)."""

from __future__ import annotations

from cmrseg.constants import VERSION
from cmrseg.errors import CmrsegError


FORMAT = "cmrseg-model"

FORMAT_VERSION = 1
"""Version of the zip layout and of the ONNX metadata; a reader refuses newer versions."""


def check_format_version(version: object, source: str) -> None:
    """Refuse a missing or newer export format version with one line."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CmrsegError(f"{source}: not a cmrseg model export (bad format version {version!r})")
    if version > FORMAT_VERSION:
        raise CmrsegError(f"{source}: made by a newer cmrseg (export format version {version}; this cmrseg "
                          f"{VERSION} reads up to {FORMAT_VERSION}); upgrade cmrseg")
