"""What every reader of :mod:`cmrseg.data.readers` gives: a :class:`VolumeCase` (a volume on disk, before it is read)
and a :class:`Volume` (read: uint8 image and labels, ``H x W x Z``, with its geometry)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cmrseg.errors import CmrsegError


@dataclass
class VolumeCase:
    """One image volume on disk before it is read: its case id, patient, phase, files and the reader that reads it
    (its :attr:`Reader.name`)."""

    case: str
    patient: str
    image_path: Path
    label_path: Path | None = None
    phase: str | None = None
    info: dict[str, str] = field(default_factory=dict)
    reader: str = "NIfTI"


@dataclass
class Volume:
    """A read volume: ``image`` uint8 and ``label`` uint8 (or None), both H x W x Z, with the input's geometry.

    ``spacing`` is in mm, None when unknown; ``header`` is the reader's own (a nibabel header for NIfTI, None for PNG).
    ``single_image``: a 2D image read as a one-slice volume (a PNG): its slice keeps the file's id and knows no
    patient, volume, phase or position."""

    case: str
    patient: str
    phase: str | None
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    header: Any
    spacing: tuple[float, float, float] | None
    path: Path
    info: dict[str, str] = field(default_factory=dict)
    single_image: bool = False

    @property
    def n_slices(self) -> int:
        return int(self.image.shape[2])

    @property
    def group(self) -> str:
        """The ACDC diagnosis group from ``Info.cfg`` (empty when unknown)."""
        return self.info.get("Group", "")

    def slice_id(self, z: int) -> str:
        return f"{self.case}_z{z:02d}"

    def conditions(self, names: Sequence[str], z: int) -> np.ndarray:
        """Slice ``z``'s values of ``model_info.conditions`` (:mod:`cmrseg.data.conditions`); one-line error if unknown."""
        from cmrseg.data.conditions import condition_values

        return condition_values(names, self.phase, z, self.n_slices, str(self.path))


def natural_key(text: str) -> list[object]:
    """Sort key that orders embedded numbers numerically (cmr2 before cmr10)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def same_id(first: Path, second: Path, case: str) -> CmrsegError:
    """The case-id rule of every layout (and of PNG folders): two files that give one case are an error."""
    return CmrsegError(f"{first} and {second}: both give the case id '{case}'; rename or remove one")


class Reader(Protocol):
    """One input format of :mod:`cmrseg.data.readers`: it finds the cases of a path and reads each as a :class:`Volume`.

    ``name`` names the format in messages and in :attr:`VolumeCase.reader`; ``what`` says what a folder of it holds
    ("PNG slices"); ``stacks`` says whether its volumes are stacks of slices that know their patient, phase and
    position (scored and predicted as volumes, 3D clean-up, clinical indices) or single images."""

    name: str
    what: str
    stacks: bool

    def claims(self, path: Path) -> bool:
        """Whether ``path`` (a folder or one file) holds data of this format."""
        ...

    def list_cases(self, path: Path, require_labels: bool = True) -> list[VolumeCase]:
        """Every case of ``path`` in natural order, paired with its label file (required with ``require_labels``)."""
        ...

    def load(self, case: VolumeCase, with_label: bool = True) -> Volume:
        """Read ``case`` (and its label) as a checked volume; one-line errors name the file."""
        ...
