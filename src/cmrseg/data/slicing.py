"""Cutting volumes into the slices a 2D network reads: a slice with its neighbours (2.5-D) and with the same slices of
the patient's other phase, as :class:`Sample` objects; and :func:`load_folder`, every slice of a dataset whatever its
format (:mod:`cmrseg.data.readers`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg.data.readers import read_volumes, reader_for
from cmrseg.data.readers.base import Volume
from cmrseg.errors import CmrsegError


@dataclass
class Sample:
    """One slice: its id (file stem), grayscale uint8 image and optional uint8 class mask.

    A 2.5-D sample's image is ``H x W x C``: its neighbours and itself, base first (see
    :func:`context_stack`), then with ``other_phase`` the same slices of the patient's
    other phase; ``centre`` is the channel of the slice itself (None: the middle one).

    Slices cut from a volume also know their patient (``group``, the unit of every split), their
    volume's case id, their index ``z`` in it, the volume's slice count, cardiac phase (ED/ES, None when
    unknown) and voxel spacing in mm (None when unknown).
    """

    id: str
    image: np.ndarray
    mask: np.ndarray | None = None
    group: str | None = None
    volume: str | None = None
    slice_index: int | None = None
    spacing: tuple[float, float, float] | None = None
    n_slices: int | None = None
    phase: str | None = None
    centre: int | None = None

    @property
    def slice_image(self) -> np.ndarray:
        """The ``H x W`` slice itself (channel ``centre`` of a stacked image, by default the middle one)."""
        if self.image.ndim == 2:
            return self.image
        return self.image[:, :, self.image.shape[2] // 2 if self.centre is None else self.centre]

    def conditions(self, names: Sequence[str]) -> np.ndarray:
        """This slice's values of ``model_info.conditions`` (:mod:`cmrseg.data.conditions`); one-line error if unknown."""
        from cmrseg.data.conditions import condition_values

        if names and self.volume is None:
            raise CmrsegError(f"slice {self.id}: this model is conditioned on {' and '.join(names)} "
                              "(model_info.conditions), which only slices of NIfTI volumes know, not PNG slices")
        return condition_values(names, self.phase, self.slice_index, self.n_slices, f"slice {self.id}")


def channels_first(image: np.ndarray) -> np.ndarray:
    """``C x H x W`` view of an ``H x W`` image (C = 1) or a channel-last ``H x W x C`` 2.5-D stack."""
    return image[None] if image.ndim == 2 else image.transpose(2, 0, 1)


POSITIONS = ("base", "mid", "apex")


def slice_positions(n_slices: int) -> list[str]:
    """Base / mid / apex third of each slice index, in the slice order of the volume (ACDC: base first)."""
    return [POSITIONS[min(2, (3 * z) // max(n_slices, 1))] for z in range(n_slices)]


def context_stack(image: np.ndarray, z: int, context_slices: int = 0) -> np.ndarray:
    """Slice ``z`` of an ``H x W x Z`` volume, or with ``context_slices`` k its 2k+1 slices ``z-k .. z+k`` as
    ``H x W x (2k+1)``, the neighbours beyond the stack zeros (so the network can tell an end slice)."""
    if not context_slices:
        return np.ascontiguousarray(image[:, :, z])
    stack = np.zeros((*image.shape[:2], 2 * context_slices + 1), dtype=image.dtype)
    for channel, source in enumerate(range(z - context_slices, z + context_slices + 1)):
        if 0 <= source < image.shape[2]:
            stack[:, :, channel] = image[:, :, source]
    return stack


OTHER_PHASE = {"ED": "ES", "ES": "ED"}


def phase_partners(items: Sequence[Any], where: Callable[[Any], Path]) -> dict[str, Any]:
    """Each case's other-phase case (ED <-> ES of the same patient) among ``items`` (volumes or cases, with
    ``case``, ``patient`` and ``phase``), for ``model_info.other_phase``; ``where`` names an item's file in the
    one-line error for a case whose phase or partner is missing."""
    by_phase = {(item.patient, item.phase): item for item in items}
    partners = {}
    for item in items:
        partner = by_phase.get((item.patient, OTHER_PHASE.get(item.phase or "")))
        if partner is None:
            wanted = f"its {OTHER_PHASE[item.phase]} volume" if item.phase in OTHER_PHASE else "its phase (ED or ES)"
            raise CmrsegError(f"{where(item)}: this model also reads the patient's other phase (model_info.other_phase), "
                              f"but {wanted} is not in the folder; give both ED and ES of every patient")
        partners[item.case] = partner
    return partners


def check_partner(volume: Volume, partner: Volume) -> None:
    """Refuse an ED/ES pair whose grids differ: the model reads slice ``z`` of both."""
    if partner.image.shape != volume.image.shape:
        raise CmrsegError(f"{partner.path}: shape {partner.image.shape} differs from the other phase's "
                          f"{volume.image.shape} ({volume.path.name}); model_info.other_phase reads the same slice of both")


def slice_input(volume: Volume, z: int, context_slices: int = 0, partner: Volume | None = None) -> np.ndarray:
    """What the network reads of slice ``z``: :func:`context_stack`, then with a ``partner`` (the other phase's
    volume) the same slices of it as further channels, ``H x W x 2(2k+1)``."""
    own = context_stack(volume.image, z, context_slices)
    if partner is None:
        return own
    other = context_stack(partner.image, z, context_slices)
    return np.ascontiguousarray(np.dstack([own, other]))


def volume_samples(volumes: list[Volume], context_slices: int = 0, other_phase: bool = False) -> list[Sample]:
    """Every slice of every volume as a :class:`Sample` grouped by patient (``case_zNN`` ids), with
    ``context_slices`` neighbours each side in its image and, with ``other_phase``, the same slices of the
    patient's other phase behind them (:func:`slice_input`). A single image (a PNG) is one sample with the file's id
    that knows no patient, volume or position."""
    partners = phase_partners(volumes, lambda v: v.path) if other_phase else {}
    for volume in volumes if other_phase else ():
        check_partner(volume, partners[volume.case])
    return [_image_sample(volume) if volume.single_image else
            Sample(volume.slice_id(z), slice_input(volume, z, context_slices, partners.get(volume.case)),
                   None if volume.label is None else np.ascontiguousarray(volume.label[:, :, z]),
                   group=volume.patient, volume=volume.case, slice_index=z, spacing=volume.spacing,
                   n_slices=volume.n_slices, phase=volume.phase, centre=context_slices)
            for volume in volumes for z in range(volume.n_slices)]


def _image_sample(volume: Volume) -> Sample:
    """The one sample of a single image (:attr:`Volume.single_image`)."""
    return Sample(volume.case, context_stack(volume.image, 0),
                  None if volume.label is None else np.ascontiguousarray(volume.label[:, :, 0]))


def load_folder(directory: str | Path, require_masks: bool = True, context_slices: int = 0,
                other_phase: bool = False) -> list[Sample]:
    """Every slice of a dataset folder or file, whatever reader reads it (:mod:`cmrseg.data.readers`); with
    ``require_masks`` each image must have its labels.

    Slices of stacks (NIfTI volumes) come with ``context_slices`` neighbours on each side stacked behind them (2.5-D)
    and with ``other_phase`` the same slices of the patient's other phase; single images (PNG) have neither, and asking
    for them is a one-line error."""
    reader = reader_for(directory)
    if not reader.stacks and (context_slices or other_phase):
        key, why = ((f"context_slices {context_slices}", "neighbouring slices") if context_slices
                    else ("other_phase", "ED and ES of each patient"))
        raise CmrsegError(f"{directory}: model_info.{key} needs NIfTI volumes ({why}), this folder holds {reader.what}")
    return volume_samples(read_volumes(directory, require_labels=require_masks), context_slices, other_phase)
