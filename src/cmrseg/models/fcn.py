"""Fully convolutional network (Long, Shelhamer and Darrell, 2015) on VGG16, registered as ``FCN``.

VGG16's five conv stages (64, 128, 256, 512, 512 channels; 2, 2, 3, 3, 3 convs, each stage ending in a 2x2
max pool), then fc6 as a 7x7 conv 4096 + ReLU + dropout, fc7 as a 1x1 conv 4096 + ReLU + dropout and a
1x1 class scorer at stride 32. ``options.variant`` chooses the upsampling path:

* ``32s``: one learned 64/32 transposed conv to the input size;
* ``16s``: 2x up, add the scored pool4 map, 32/16 up;
* ``8s`` (default): 2x up, add scored pool4, 2x up, add scored pool3, 16/8 up.

Transposed convolutions start as bilinear interpolation and the skip scorers at zero, as in the paper.
Instead of the paper's 100-pixel padding and crops, fc6 is "same"-padded and the wrapper pads the input
to a multiple of 32 and crops the logits back, so every size works. ``options``: ``variant``,
``width_multiplier`` (default 1), ``batch_norm`` (default false, as the original). Dropout is
``model_info.dropout``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cmrseg.config import ModelInfo
from cmrseg.models.blocks import (
    VGG16_STAGES,
    ConvBNReLU,
    init_weights,
    scaled,
    vgg_stage,
    width_multiplier,
)
from cmrseg.models.registry import model_options, register_model

VARIANTS: tuple[str, ...] = ("8s", "16s", "32s")
FC_WIDTH = 4096


def bilinear_upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Per-channel transposed conv (kernel ``2 * factor``) initialised to bilinear upsampling by ``factor``."""
    layer = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    centre = factor - 0.5
    ramp = 1 - torch.abs(torch.arange(2 * factor, dtype=torch.float32) - centre) / factor
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[range(channels), range(channels)] = torch.outer(ramp, ramp)
    return layer


def _zero_scorer(in_channels: int, num_classes: int) -> nn.Conv2d:
    scorer = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.zeros_(scorer.weight)
    nn.init.zeros_(scorer.bias)
    return scorer


class FCN(nn.Module):
    """FCN-32s/16s/8s on a VGG16 encoder; input height and width must be multiples of 32."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        variant: str = "8s",
        width: float = 1.0,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown FCN variant '{variant}', expected one of {list(VARIANTS)}")
        self.variant = variant
        widths = [scaled(channels, width) for channels, _ in VGG16_STAGES]
        stages = []
        for (_, convs), out_channels in zip(VGG16_STAGES, widths):
            stages.append(nn.Sequential(vgg_stage(in_channels, out_channels, convs, batch_norm), nn.MaxPool2d(2)))
            in_channels = out_channels
        self.stages = nn.ModuleList(stages)
        fc = scaled(FC_WIDTH, width)
        self.head = nn.Sequential(
            ConvBNReLU(widths[4], fc, 7, batch_norm=batch_norm),
            nn.Dropout2d(dropout),
            ConvBNReLU(fc, fc, 1, batch_norm=batch_norm),
            nn.Dropout2d(dropout),
        )
        init_weights(self)
        self.score = nn.Conv2d(fc, num_classes, 1)
        final_factor = int(variant[:-1])
        if variant in ("8s", "16s"):
            self.score_pool4 = _zero_scorer(widths[3], num_classes)
            self.up_pool5 = bilinear_upsampler(num_classes, 2)
        if variant == "8s":
            self.score_pool3 = _zero_scorer(widths[2], num_classes)
            self.up_pool4 = bilinear_upsampler(num_classes, 2)
        self.up_final = bilinear_upsampler(num_classes, final_factor)

    def forward(self, x: Tensor) -> Tensor:
        pooled = []
        for stage in self.stages:
            x = stage(x)
            pooled.append(x)
        score = self.score(self.head(x))
        if self.variant != "32s":
            score = self.up_pool5(score) + self.score_pool4(pooled[3])
        if self.variant == "8s":
            score = self.up_pool4(score) + self.score_pool3(pooled[2])
        return self.up_final(score)


@register_model(
    "FCN",
    size_divisor=32,
    description="FCN on VGG16; options.variant 8s (default), 16s or 32s; options.width_multiplier, batch_norm",
    accepts={"dropout"},
    options={"variant": "8s", "width_multiplier": 1.0, "batch_norm": False},
)
def build_fcn(info: ModelInfo, num_classes: int) -> nn.Module:
    """FCN-8s (or 16s/32s) with the VGG16 encoder written out."""
    options = model_options(info)
    if not isinstance(options["batch_norm"], bool):
        raise ValueError(f"batch_norm must be true or false, got {options['batch_norm']!r}")
    return FCN(
        info.network_channels,
        num_classes,
        str(options["variant"]),
        width_multiplier(options["width_multiplier"]),
        options["batch_norm"],
        info.dropout,
    )
