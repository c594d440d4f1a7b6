"""ResNet-101 (He et al., 2016) as a dilated DeepLab backbone.

Stem 7x7/2 conv 64 + 3x3/2 max pool, then four Bottleneck stages of ``blocks`` = (3, 4, 23, 3) blocks with
64, 128, 256, 512 planes (256, 512, 1024, 2048 output channels). Stage 1 gives the low-level features
(stride 4). For output stride 16 stage 4 trades its stride for dilation 2; for output stride 8 stage 3
does too and stage 4 uses dilation 4. Stage 4 applies DeepLabV3's multi-grid unit rates (1, 2, 4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from cmrseg.models.blocks import Bottleneck, ConvBNReLU, bottleneck_layer, init_weights, scaled
from cmrseg.models.encoders import register_encoder

RESNET101_BLOCKS: tuple[int, ...] = (3, 4, 23, 3)
MULTI_GRID: tuple[int, ...] = (1, 2, 4)


class ResNet(nn.Module):
    """Dilated ResNet with Bottleneck blocks; returns ``(high, low)`` feature maps."""

    def __init__(
        self,
        in_channels: int = 3,
        blocks: Sequence[int] = RESNET101_BLOCKS,
        output_stride: int = 16,
        width_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"ResNet needs 4 block counts of at least 1, got {tuple(blocks)}")
        if output_stride not in (8, 16):
            raise ValueError(f"ResNet output_stride must be 8 or 16, got {output_stride}")
        planes = [scaled(c, width_multiplier) for c in (64, 128, 256, 512)]
        wide = Bottleneck.expansion
        stage3_dilation = 2 if output_stride == 8 else 1
        stage4_dilation = 2 * stage3_dilation
        self.output_stride = output_stride
        self.stem = nn.Sequential(ConvBNReLU(in_channels, planes[0], 7, stride=2), nn.MaxPool2d(3, 2, 1))
        self.layer1 = bottleneck_layer(planes[0], planes[0], [1] * blocks[0])
        self.layer2 = bottleneck_layer(planes[0] * wide, planes[1], [1] * blocks[1], stride=2)
        self.layer3 = bottleneck_layer(
            planes[1] * wide, planes[2], [stage3_dilation] * blocks[2], stride=1 if output_stride == 8 else 2
        )
        grid = [stage4_dilation * MULTI_GRID[i % len(MULTI_GRID)] for i in range(blocks[3])]
        self.layer4 = bottleneck_layer(planes[2] * wide, planes[3], grid)
        self.low_level_channels = planes[0] * wide
        self.out_channels = planes[3] * wide
        init_weights(self)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        low = self.layer1(self.stem(x))
        return self.layer4(self.layer3(self.layer2(low))), low


@register_encoder("resnet", description="ResNet-101", options={"blocks": RESNET101_BLOCKS})
def resnet_encoder(input_channels: int, output_stride: int, width: float, options: Mapping[str, Any]) -> nn.Module:
    """ResNet with ``options.blocks`` stage lengths; low-level features from layer1 (256 channels)."""
    return ResNet(input_channels, tuple(options["blocks"]), output_stride, width)
