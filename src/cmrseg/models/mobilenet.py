"""MobileNetV2 (Sandler et al., 2018) as a dilated DeepLab backbone.

Stem 3x3/2 conv 32, then inverted-residual stages ``(expansion t, channels c, repeats n, stride s)``::

    (1, 16, 1, 1) (6, 24, 2, 2) (6, 32, 3, 2) (6, 64, 4, 2) (6, 96, 3, 1) (6, 160, 3, 2) (6, 320, 1, 1)

Each block is 1x1 expand (t > 1), 3x3 depthwise, 1x1 linear projection, with a residual when the shape is
kept; activations are ReLU6. The final 1x1 conv 1280 of the classifier is left out (DeepLabV3+ uses the
320-channel map). Once the output stride is reached, later stages keep stride 1 and dilate instead.
The 24-channel stage gives the low-level features (stride 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from cmrseg.models.blocks import ConvBNReLU, init_weights, make_divisible
from cmrseg.models.encoders import register_encoder

INVERTED_RESIDUAL_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
LOW_LEVEL_STAGE = 1


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand, depthwise (stride, dilation), linear projection, residual when possible."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dilation: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNReLU(in_channels, hidden, 1, act=nn.ReLU6))
        layers += [
            ConvBNReLU(hidden, hidden, 3, stride, dilation, groups=hidden, act=nn.ReLU6),
            ConvBNReLU(hidden, out_channels, 1, act=None),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    """Dilated MobileNetV2 feature extractor; returns ``(high, low)`` feature maps."""

    def __init__(self, in_channels: int = 3, output_stride: int = 16, width_multiplier: float = 1.0) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"MobileNetV2 output_stride must be 8 or 16, got {output_stride}")
        channels = make_divisible(32 * width_multiplier)
        self.output_stride = output_stride
        self.stem = ConvBNReLU(in_channels, channels, 3, stride=2, act=nn.ReLU6)
        current_stride, dilation = 2, 1
        stages: list[nn.Module] = []
        for expansion, width, repeats, stride in INVERTED_RESIDUAL_SETTINGS:
            if current_stride * stride > output_stride:
                dilation, stride = dilation * stride, 1
            current_stride *= stride
            out_channels = make_divisible(width * width_multiplier)
            blocks = []
            for index in range(repeats):
                block_stride = stride if index == 0 else 1
                blocks.append(InvertedResidual(channels, out_channels, block_stride, dilation, expansion))
                channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.low_level = nn.Sequential(*stages[: LOW_LEVEL_STAGE + 1])
        self.high_level = nn.Sequential(*stages[LOW_LEVEL_STAGE + 1 :])
        self.low_level_channels = make_divisible(INVERTED_RESIDUAL_SETTINGS[LOW_LEVEL_STAGE][1] * width_multiplier)
        self.out_channels = channels
        init_weights(self)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        low = self.low_level(self.stem(x))
        return self.high_level(low), low


@register_encoder("mobilenet", description="MobileNetV2")
def mobilenet_encoder(input_channels: int, output_stride: int, width: float, options: Mapping[str, Any]) -> nn.Module:
    """MobileNetV2; low-level features from stage 2 (24 channels)."""
    return MobileNetV2(input_channels, output_stride, width)
