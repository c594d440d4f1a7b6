"""Soft-voting ensemble: the weighted mean of N trained networks' per-class softmax probabilities.

Each member keeps its own input channels and intensity normalisation, so the ensemble takes the
image scaled to [0, 1] and normalises it once per member. Members may differ in their inputs: the ensemble
takes the widest slice context and every condition plane any member needs (``model_info.context_slices`` and
``conditions``), and hands each member only its own neighbours around the centre slice and its own planes,
the planes as they are. It returns log-probabilities, so softmax and argmax downstream behave exactly as for a
single network. Everything stays in torch on the
model's device (no NumPy round trip, no hard-coded GPU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cmrseg.config import ModelInfo, stack_channels
from cmrseg.data.normalization import MemberNormalization, Normalization
from cmrseg.models.registry import build_model, model_options, register_model

EPSILON = 1e-8
MemberObserver = Callable[[torch.Tensor, torch.Tensor], None]
"""Receives the members' probabilities (``M x N x C x H x W``) and the ensemble's (``N x C x H x W``) of one call."""


class EnsembleNet(nn.Module):
    """Weighted soft voting over member networks; output is log of the averaged probabilities."""

    def __init__(self, members: list[nn.Module], normalizations: list[MemberNormalization], weights: list[float],
                 channels: list[tuple[int, list[int]]]) -> None:
        """``channels``: per member, its number of image channels and which input channels it takes (images first,
        then planes), as :func:`member_channels` gives them."""
        super().__init__()
        if not members or len(members) != len(normalizations) or len(members) != len(weights):
            raise ValueError("an ensemble needs one normalisation and one weight per member")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"ensemble weights must be non-negative with a positive sum, got {weights}")
        if len(channels) != len(members):
            raise ValueError("an ensemble needs one channel selection per member")
        self.members = nn.ModuleList(members)
        self.normalizations = nn.ModuleList(normalizations)
        self.image_channels = [n_image for n_image, _ in channels]
        for index, (_, taken) in enumerate(channels):
            self.register_buffer(f"channels_{index}", torch.tensor(taken, dtype=torch.long), persistent=False)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32) / sum(weights))
        self.observer: MemberObserver | None = None
        """Called, when set, with each call's members' probabilities (``M x N x C x H x W``) and their weighted
        mean: how quality control measures the members' agreement (:mod:`cmrseg.inference.predictor`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(0, device=x.device)
        observed = []
        for index, (weight, member, normalize) in enumerate(zip(self.weights, self.members, self.normalizations)):
            inputs = x.index_select(1, getattr(self, f"channels_{index}"))
            image, planes = inputs[:, : self.image_channels[index]], inputs[:, self.image_channels[index] :]
            probs = torch.softmax(member(torch.cat([normalize(image), planes], dim=1)), dim=1)
            if self.observer is not None:
                observed.append(probs)
            total = weight * probs if total.numel() == 0 else total + weight * probs
        if self.observer is not None:
            self.observer(torch.stack(observed), total)
        return torch.log(total.clamp_min(EPSILON))


def find_ensemble(model: nn.Module) -> EnsembleNet | None:
    """The soft-voting network inside ``model`` (a :class:`cmrseg.models.registry.SegmentationNet` wraps it), or None
    for a single network."""
    return next((module for module in model.modules() if isinstance(module, EnsembleNet)), None)


def member_channels(ensemble: ModelInfo, member: ModelInfo) -> tuple[int, list[int]]:
    """Which of the ensemble's input channels a member takes: its own neighbours around the centre slice (the centre
    alone for a 2D member), with ``other_phase`` the same of the other phase's stack, then its own condition planes;
    and how many of those are image channels."""
    if (member.context_slices > ensemble.context_slices or not set(member.conditions) <= set(ensemble.conditions)
            or (member.other_phase and not ensemble.other_phase)):
        raise ValueError(f"a member with context_slices {member.context_slices}, other_phase {member.other_phase} and "
                         f"conditions {member.conditions} does not fit the ensemble's ({ensemble.context_slices}, "
                         f"{ensemble.other_phase}, {ensemble.conditions})")
    centre = ensemble.context_slices
    image = list(range(centre - member.context_slices, centre + member.context_slices + 1))
    if member.other_phase:
        image += [channel + stack_channels(ensemble.context_slices) for channel in image]
    planes = [ensemble.image_channels + ensemble.conditions.index(name) for name in member.conditions]
    return len(image), image + planes


def ensemble_network(info: ModelInfo, members: list[tuple[nn.Module, Normalization, ModelInfo]],
                     weights: list[float] | None = None) -> EnsembleNet:
    """The soft-voting network of ``info`` (the ensemble's inputs) over loaded ``members``: each a network, its
    normalisation and its ``model_info``; ``weights`` default to equal."""
    return EnsembleNet([member for member, _, _ in members],
                       [MemberNormalization.from_normalization(norm) for _, norm, _ in members],
                       [float(w) for w in weights or [1.0] * len(members)],
                       [member_channels(info, member_info) for _, _, member_info in members])


def _untrained_member(spec: Any) -> tuple[nn.Module, Normalization, ModelInfo]:
    """A member network built from its stored ``{"model_info", "normalization"}`` (weights come from the
    ensemble's checkpoint), with its normalisation and ``model_info``."""
    if not isinstance(spec, dict) or "model_info" not in spec or "normalization" not in spec:
        raise ValueError("options.members must give each member's model_info and normalization "
                         "(as `cmrseg ensemble` writes them)")
    info = ModelInfo.model_validate({**spec["model_info"], "pretrained": None})
    return build_model(info), Normalization.from_dict(spec["normalization"]), info


@register_model(
    "Ensemble",
    size_divisor=1,
    description="soft-voting ensemble of trained runs (options.members, weights); built by `cmrseg ensemble`",
    standalone=False,
    options={"members": None, "weights": None},
)
def build_ensemble(info: ModelInfo, num_classes: int) -> nn.Module:
    """``options.members``: list of ``{"model_info", "normalization"}``; ``options.weights``. The members are
    untrained here: an ensemble's checkpoint holds their weights (:func:`ensemble_network` builds one from
    loaded members)."""
    options = model_options(info)
    specs = options["members"]
    if not specs:
        raise ValueError("options.members must list the member runs")
    return ensemble_network(info, [_untrained_member(spec) for spec in specs], options["weights"])
