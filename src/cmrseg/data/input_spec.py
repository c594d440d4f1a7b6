"""The input spec: everything that turns a stored image into the network's tensor, with one owner.

A network reads, for each slice, ``C x H x W`` float32 channels:

1. the slice and its ``context_slices`` neighbours each side (2.5-D), then with ``other_phase`` the same slices of the
   patient's other phase (:func:`cmrseg.data.slicing.slice_input` cuts them from the volumes), each channel
   normalised on its own (:class:`~cmrseg.data.normalization.Normalization`, fitted on the training split);
2. one constant plane per name in ``conditions`` (:mod:`cmrseg.data.conditions`);

at the plan's target spacing, in the plan's patches, after the plan's intensity scheme (:class:`cmrseg.planning.Plan`:
the spec holds the run's plan; the plan owns those choices).

:class:`InputSpec` is built once per run from the config (:meth:`InputSpec.from_config`), completed with the fitted
normalisation and the plan (:meth:`InputSpec.fitted`), stored with the run (``runs.write_input_spec``: the config's
``model_info`` holds the channel keys, ``normalization.json`` and ``plan.json`` the rest) and in an ONNX export as one
metadata key (:meth:`to_dict`), and read back by training, prediction, ensembles and exports alike.
:meth:`InputSpec.network_input` is the one function that builds the tensor, for training
(:class:`cmrseg.data.dataset.SegmentationDataset`) and prediction (:class:`cmrseg.inference.ModelPredictor`).

Adding an input feature: a field here, its channels in :meth:`network_input` (and :attr:`network_channels`), its
serialisation in :meth:`to_dict`/:meth:`from_dict`, and the code that cuts its data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmrseg.config import stack_channels
from cmrseg.data.conditions import CONDITIONS, with_planes
from cmrseg.data.normalization import Normalization
from cmrseg.data.readers.base import Volume
from cmrseg.data.slicing import Sample, channels_first, check_partner, load_folder, slice_input
from cmrseg.errors import CmrsegError
from cmrseg.planning.plan import Plan

if TYPE_CHECKING:
    from cmrseg.config import ModelInfo

SPEC_VERSION = 1
"""Version of :meth:`InputSpec.to_dict`; a reader refuses newer ones."""


@dataclass(frozen=True)
class InputSpec:
    """What a network reads and how a stored slice becomes it (see the module doc)."""

    context_slices: int = 0
    other_phase: bool = False
    conditions: tuple[str, ...] = ()
    normalization: Normalization = field(default_factory=Normalization)
    plan: Plan | None = None

    @classmethod
    def from_config(cls, model_info: ModelInfo, normalization: Normalization | None = None,
                    plan: Plan | None = None) -> InputSpec:
        """The spec of a config's ``model_info`` (its channel keys), with ``normalization`` and ``plan`` when known."""
        return cls(model_info.context_slices, model_info.other_phase, tuple(model_info.conditions),
                   normalization or Normalization(), plan)

    def channel_keys(self) -> dict[str, Any]:
        """The config's ``model_info`` keys that say this spec's channels (what :meth:`from_config` reads)."""
        return {"context_slices": self.context_slices, "other_phase": self.other_phase, "conditions": list(self.conditions)}

    def fitted(self, normalization: Normalization, plan: Plan | None) -> InputSpec:
        """This spec with the normalisation fitted on the training split and the plan made from it."""
        return replace(self, normalization=normalization, plan=plan)

    @property
    def image_channels(self) -> int:
        """The slice and its neighbours (``context_slices``), twice with ``other_phase`` (then the other phase's)."""
        return stack_channels(self.context_slices, self.other_phase)

    @property
    def network_channels(self) -> int:
        """Channels the network takes: its image channels and one plane per condition."""
        return self.image_channels + len(self.conditions)

    @property
    def target_spacing(self) -> list[float] | None:
        """The in-plane spacing (mm) slices are resampled to, None when unknown (each slice keeps its grid)."""
        return None if self.plan is None else self.plan.target_spacing

    @property
    def patch_size(self) -> list[int] | None:
        """The training patch (rows, columns), None for whole slices."""
        return None if self.plan is None else self.plan.patch_size

    def network_input(self, images: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        """``N x C x H x W`` float32 network input of ``N x K x H x W`` raw (uint8) image stacks: each channel
        normalised on its own, then each image's condition ``values`` (``N x M``) as constant planes.

        The one place the tensor is built: training and prediction both call it."""
        normalized = np.stack([self.normalization.apply_channels(image) for image in images])
        if self.conditions:
            if values is None:
                raise CmrsegError(self._needs_conditions())
            normalized = with_planes(normalized, values)
        return normalized

    def channels_first(self, image: np.ndarray) -> np.ndarray:
        """``K x H x W`` of an ``H x W`` slice or ``H x W x K`` stack, checked against the slices the network takes."""
        if (image.shape[2] if image.ndim == 3 else 1) != self.image_channels:
            what = "a single slice" if image.ndim == 2 else f"a stack of {image.shape[2]} slices"
            if self.other_phase:
                raise CmrsegError("this model also reads the patient's other phase (model_info.other_phase): it takes "
                                  f"NIfTI volumes with ED and ES of each patient, not {what}")
            if self.context_slices:
                raise CmrsegError(f"this model is 2.5-D (context_slices {self.context_slices}): it takes NIfTI "
                                  f"volumes, which give each slice its neighbours, not {what}")
            raise CmrsegError(f"this model takes single slices, not {what}")
        return channels_first(image)

    def read_samples(self, directory: str | Path, require_masks: bool = True) -> list[Sample]:
        """Every slice of a dataset folder or file as this spec's network reads it (its neighbours, its other phase)."""
        return load_folder(directory, require_masks, self.context_slices, self.other_phase)

    def volume_stacks(self, volume: Volume, partner: Volume | None = None) -> list[np.ndarray]:
        """Each slice of ``volume`` as this spec's network reads it (:func:`~cmrseg.data.slicing.slice_input`), with
        the same slices of ``partner`` (the patient's other phase; required with ``other_phase``, checked)."""
        if self.other_phase:
            if partner is None:
                raise CmrsegError(f"{volume.path}: this model also reads the patient's other phase "
                                  "(model_info.other_phase); predict ED and ES of the patient together")
            check_partner(volume, partner)
        else:
            partner = None
        return [slice_input(volume, z, self.context_slices, partner) for z in range(volume.n_slices)]

    def volume_values(self, volume: Volume) -> list[np.ndarray] | None:
        """Each slice's condition values of ``volume`` (None for a model without conditions)."""
        return [volume.conditions(self.conditions, z) for z in range(volume.n_slices)] if self.conditions else None

    def condition_values(self, count: int, conditions: Sequence[np.ndarray] | None) -> list[np.ndarray]:
        """Each of ``count`` images' condition values, checked against :attr:`conditions` (empty without any)."""
        if not self.conditions:
            return [np.zeros(0, dtype=np.float32)] * count
        if conditions is None:
            raise CmrsegError(self._needs_conditions())
        if len(conditions) != count or any(len(v) != len(self.conditions) for v in conditions):
            raise CmrsegError(f"expected {len(self.conditions)} condition values for each of {count} images")
        return [np.asarray(v, dtype=np.float32) for v in conditions]

    def _needs_conditions(self) -> str:
        return (f"this model is conditioned on {' and '.join(self.conditions)} (model_info.conditions): "
                "it takes NIfTI volumes, whose slices know them, not single images")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (an ONNX export's ``cmrseg_input_spec`` metadata)."""
        return {"version": SPEC_VERSION, "context_slices": self.context_slices, "other_phase": self.other_phase,
                "conditions": list(self.conditions), "image_channels": self.image_channels,
                "network_channels": self.network_channels, "normalization": self.normalization.to_dict(),
                "plan": None if self.plan is None else self.plan.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "input spec") -> InputSpec:
        """The spec of :meth:`to_dict`'s form; a one-line error naming ``source`` for anything else."""
        from pydantic import ValidationError

        try:
            if int(data.get("version", 1)) > SPEC_VERSION:
                raise ValueError(f"version {data['version']} is newer than this cmrseg reads ({SPEC_VERSION}); "
                                 "upgrade cmrseg")
            plan = data.get("plan")
            return cls.checked(int(data.get("context_slices", 0)), data.get("other_phase", False),
                               data.get("conditions", []), Normalization.from_dict(data["normalization"]),
                               None if plan is None else Plan.model_validate(plan))
        except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as err:
            raise CmrsegError(f"{source}: not a valid input spec ({type(err).__name__}: {err})") from None

    @classmethod
    def checked(cls, context_slices: int, other_phase: Any, conditions: Any, normalization: Normalization,
                plan: Plan | None = None) -> InputSpec:
        """A spec from loose values as stored (an older ONNX export's keys), checked (ValueError/TypeError otherwise)."""
        if not isinstance(other_phase, bool):
            raise TypeError("'other_phase' is not true or false")
        if not isinstance(conditions, list) or any(name not in CONDITIONS for name in conditions):
            raise ValueError(f"'conditions' must be a list of {', '.join(CONDITIONS)}, got {conditions!r}")
        if context_slices < 0:
            raise ValueError(f"'context_slices' must be 0 or more, got {context_slices}")
        return cls(context_slices, other_phase, tuple(conditions), normalization, plan)

    @classmethod
    def merged(cls, specs: Sequence[InputSpec], normalization: Normalization, plan: Plan | None) -> InputSpec:
        """An ensemble's spec: the widest ``context_slices``, ``other_phase`` if any member reads it, every condition
        a member takes (in :data:`~cmrseg.data.conditions.CONDITIONS` order), with the ensemble's own
        ``normalization`` and shared ``plan``; each member then takes its part of the channels
        (:func:`cmrseg.models.voting.member_channels`)."""
        needed = {name for spec in specs for name in spec.conditions}
        return cls(max(spec.context_slices for spec in specs), any(spec.other_phase for spec in specs),
                   tuple(name for name in CONDITIONS if name in needed), normalization, plan)
