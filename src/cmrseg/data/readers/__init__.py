"""Every input is a volume: one reader per format behind one registry, so no command asks "PNG or NIfTI?".

A reader (:class:`~cmrseg.data.readers.base.Reader`) finds the cases of a folder or file and reads each one as a
:class:`~cmrseg.data.readers.base.Volume` (uint8 ``H x W x Z`` image and labels, spacing in mm or None). Two are
registered: :class:`~cmrseg.data.readers.nifti.NiftiReader` (ACDC, flat and nnU-Net layouts, one ``.nii.gz``) and
:class:`~cmrseg.data.readers.png.PngReader` (a PNG is a one-slice volume of unknown spacing; the fallback). Callers
ask :func:`reader_for` (or :func:`list_cases`, :func:`read_volumes`) and, where slices and volumes are scored
differently, the reader's ``stacks`` capability, never the file format. A new format is one more
:func:`register_reader` call (docs/data-formats.md shows a DICOM reader).
"""

from __future__ import annotations

from pathlib import Path

from cmrseg.data.readers.base import Reader, Volume, VolumeCase
from cmrseg.data.readers.nifti import NiftiReader
from cmrseg.data.readers.png import PngReader
from cmrseg.errors import CmrsegError

READERS: list[Reader] = []
"""The registered readers, asked in this order (the last registered first; PNG, the fallback, last)."""


def register_reader(reader: Reader) -> Reader:
    """Register ``reader`` ahead of the ones before it (so a new format is asked before the PNG fallback)."""
    READERS.insert(0, reader)
    return reader


def reader_for(path: str | Path) -> Reader:
    """The reader of ``path`` (a folder or one file): the first registered reader that claims it."""
    for reader in READERS:
        if reader.claims(Path(path)):
            return reader
    raise CmrsegError(f"{path}: no reader for this input (expected {', '.join(r.what for r in READERS)})")


def reader_named(name: str) -> Reader:
    """The registered reader called ``name`` (:attr:`VolumeCase.reader`)."""
    for reader in READERS:
        if reader.name == name:
            return reader
    raise CmrsegError(f"no reader named {name!r}; registered: {', '.join(r.name for r in READERS)}")


def reads_stacks(path: str | Path) -> bool:
    """Whether ``path`` holds stacks of slices (volumes that know patient, phase and position), not single images."""
    return reader_for(path).stacks


def list_cases(path: str | Path, require_labels: bool = True) -> list[VolumeCase]:
    """Every case of ``path`` (its reader's :meth:`~cmrseg.data.readers.base.Reader.list_cases`)."""
    return reader_for(path).list_cases(Path(path), require_labels)


def load_volume(case: VolumeCase, with_label: bool = True) -> Volume:
    """``case`` read by the reader that listed it."""
    return reader_named(case.reader).load(case, with_label)


def read_volumes(path: str | Path, require_labels: bool = True) -> list[Volume]:
    """Every volume of ``path``, labels included when present (each required with ``require_labels``)."""
    return [load_volume(case) for case in list_cases(path, require_labels)]


register_reader(PngReader())
register_reader(NiftiReader())

__all__ = ["READERS", "Reader", "Volume", "VolumeCase", "list_cases", "load_volume", "read_volumes", "reader_for",
           "reader_named", "reads_stacks", "register_reader"]
