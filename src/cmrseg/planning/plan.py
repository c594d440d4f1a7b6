"""The plan: the in-plane spacing, patch and batch a network trains and predicts at, chosen from the fingerprint.

The rules, each printed with its reason by ``cmrseg plan``:

- **target spacing**: the median in-plane spacing of the training volumes (nnU-Net's rule); unknown spacing (PNG
  slices, acdc96) keeps every slice on its own grid, as cmrseg trained before plans existed.
- **patch size**: with a known spacing, a square patch that holds the 95th-percentile heart extent with
  :data:`PATCH_MARGIN` context around it, rounded up to a multiple of :data:`PATCH_MULTIPLE`; slices no larger than
  that are trained whole. Patches are cut after the whole slice is augmented and normalised, so training normalises
  what prediction normalises; :data:`FOREGROUND_FRACTION` of them are centred on a labeled pixel (nnU-Net's
  oversampling) and the rest anywhere in the slice, so the network also learns what is *not* a heart.
- **batch size**: the config's ``batch_size``.
- **intensity**: each volume's 0.5-99.5th percentile mapped to 0-255, then the config's normalisation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from cmrseg.planning.fingerprint import Fingerprint, fingerprint_samples

if TYPE_CHECKING:
    from cmrseg.config import ExperimentConfig

PATCH_MARGIN = 1.4
"""Patch side / 95th-percentile heart extent: the heart plus the context a network needs to tell it apart."""
PATCH_MULTIPLE = 16
"""Patch sides are multiples of 16, the down-sampling factor of a depth-4 U-Net."""
MIN_PATCH = 64
FOREGROUND_FRACTION = 1 / 3


class Plan(BaseModel):
    """What the network trains and predicts at (``plan.json`` of a run; ``reasons`` says why, key by key)."""

    target_spacing: list[float] | None = Field(None, description="in-plane (rows, columns) mm; None: each slice's own grid")
    patch_size: list[int] | None = Field(None, description="training patch (rows, columns); None: whole slices")
    batch_size: int = 8
    foreground_fraction: float = FOREGROUND_FRACTION
    intensity: str = ""
    reasons: dict[str, str] = Field(default_factory=dict)
    fingerprint: Fingerprint | None = None

    def describe(self) -> list[str]:
        """One line per choice and why, as ``cmrseg plan`` and ``train`` print them."""
        shown = {
            "target_spacing": "unknown (each slice on its own grid)" if self.target_spacing is None
            else "x".join(f"{s:g}" for s in self.target_spacing) + " mm",
            "patch_size": "whole slices" if self.patch_size is None else "x".join(str(p) for p in self.patch_size),
            "batch_size": str(self.batch_size),
            "foreground_fraction": f"{self.foreground_fraction:.2f}" if self.patch_size else "n/a (whole slices)",
            "intensity": self.intensity,
        }
        return [f"{key}: {value} ({self.reasons.get(key, '')})" for key, value in shown.items()]


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def _target_spacing(fingerprint: Fingerprint, override: float | None) -> tuple[list[float] | None, str]:
    if override is not None:
        return [override, override], "set by the config (plan.target_spacing)"
    if not fingerprint.spacing_known or fingerprint.spacing_median is None:
        return None, "the training data's spacing is unknown, so slices stay on their own grid and volumes are in voxels"
    median = fingerprint.spacing_median[:2]
    return [round(v, 4) for v in median], (f"median in-plane spacing of {fingerprint.n_volumes} training volumes "
                                           f"(range {fingerprint.spacing_min[0]:g}-{fingerprint.spacing_max[0]:g} mm)")


def _patch_size(fingerprint: Fingerprint, target: list[float] | None, config: ExperimentConfig) -> tuple[list[int] | None, str]:
    info = config.plan
    if info.whole_slices:
        return None, "set by the config (plan.whole_slices)"
    if info.patch_size is not None:
        return [info.patch_size, info.patch_size], "set by the config (plan.patch_size)"
    if target is None or fingerprint.foreground_extent_mm_p95 is None or fingerprint.spacing_median is None:
        return None, "spacing unknown: whole slices, as cmrseg trains crops such as acdc96 and cmr96"
    extent = max(e / t for e, t in zip(fingerprint.foreground_extent_mm_p95, target, strict=True))
    side = max(MIN_PATCH, _round_up(extent * PATCH_MARGIN, PATCH_MULTIPLE))
    largest = max(m * s / t for m, s, t in zip(fingerprint.slice_shape_max, fingerprint.spacing_median[:2], target,
                                                strict=True))
    if side >= largest:
        return None, f"the largest resampled slice ({largest:.0f} px) is no larger than a {side}-px patch: whole slices"
    return [side, side], (f"{PATCH_MARGIN:g} x the 95th-percentile heart extent "
                          f"({max(fingerprint.foreground_extent_mm_p95):.0f} mm = {extent:.0f} px), "
                          f"rounded up to a multiple of {PATCH_MULTIPLE}; slices up to {largest:.0f} px are cut to it")


def make_plan(fingerprint: Fingerprint, config: ExperimentConfig) -> Plan:
    """The plan of ``config`` on data with ``fingerprint``: the config's ``plan`` keys win over the rules."""
    target, target_reason = _target_spacing(fingerprint, config.plan.target_spacing)
    patch, patch_reason = _patch_size(fingerprint, target, config)
    scheme = ("each image z-scored on its own (normalization per_image)" if config.normalization == "per_image"
              else "z-score with the training split's mean and SD (normalization dataset)")
    return Plan(
        target_spacing=target,
        patch_size=patch,
        batch_size=config.batch_size,
        foreground_fraction=config.plan.foreground_fraction,
        intensity=f"0.5-99.5th percentile of each volume to 0-255, then {scheme}",
        reasons={
            "target_spacing": target_reason,
            "patch_size": patch_reason,
            "batch_size": "the config's batch_size",
            "foreground_fraction": "nnU-Net's share of patches centred on a labeled pixel"
            if config.plan.foreground_fraction == FOREGROUND_FRACTION else "set by the config (plan.foreground_fraction)",
            "intensity": "range-free, so any scanner's intensity scale gives the same input",
        },
        fingerprint=fingerprint,
    )


def plan_dataset(data_dir: str | Path, config: ExperimentConfig | None = None) -> Plan:
    """The plan of a labeled dataset folder (PNG or NIfTI volumes) under ``config`` (default: the default config)."""
    from cmrseg.config import ExperimentConfig
    from cmrseg.data.slicing import load_folder

    config = config or ExperimentConfig()
    samples = load_folder(data_dir, require_masks=True)
    return make_plan(fingerprint_samples(samples), config)


def write_plan_file(plan: Plan, path: str | Path) -> None:
    """Write ``plan`` as JSON to ``path``: a new file or one cmrseg wrote, never anything else."""
    from cmrseg.io.outputs import check_output_file
    from cmrseg.io.atomic import write_json_atomic

    write_json_atomic(check_output_file(path), plan.model_dump(mode="json"))
