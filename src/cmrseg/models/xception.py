"""Aligned Xception as modified for DeepLabV3+ (Chen et al., 2018), a dilated DeepLab backbone.

Every separable convolution is 3x3 depthwise + BN + ReLU + 1x1 pointwise + BN; each block holds three of
them, each preceded by a ReLU, and adds a skip (1x1 conv + BN when the shape changes, identity otherwise).
Max pooling is replaced by stride-2 separable convolutions::

    entry   3x3/2 conv 32, 3x3 conv 64, blocks 128/2 (low-level features, stride 4), 256/2, 728/s3
    middle  ``middle_repeats`` (16) blocks 728, dilation d_mid
    exit    block (728, 1024, 1024) at dilation d1, then separable convs 1536, 1536, 2048 (+ ReLU) at d2

Output stride 16: s3 = 2, d_mid = 1, (d1, d2) = (1, 2). Output stride 8: s3 = 1, d_mid = 2, (d1, d2) = (2, 4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from cmrseg.models.blocks import ConvBNReLU, init_weights, scaled
from cmrseg.models.encoders import register_encoder

MIDDLE_REPEATS = 16


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 (stride, dilation) + BN + ReLU, then pointwise 1x1 + BN."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__(
            ConvBNReLU(in_channels, in_channels, 3, stride, dilation, groups=in_channels),
            ConvBNReLU(in_channels, out_channels, 1, act=None),
        )


class XceptionBlock(nn.Module):
    """Three (ReLU, separable conv) units with output ``channels``; the last one carries the stride."""

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        stride: int = 1,
        dilation: int = 1,
        start_with_relu: bool = True,
    ) -> None:
        super().__init__()
        units: list[nn.Module] = []
        previous = in_channels
        for index, out_channels in enumerate(channels):
            if index > 0 or start_with_relu:
                units.append(nn.ReLU())
            last = index == len(channels) - 1
            units.append(SeparableConv(previous, out_channels, stride if last else 1, dilation))
            previous = out_channels
        self.body = nn.Sequential(*units)
        keeps_shape = stride == 1 and in_channels == previous
        self.skip = nn.Identity() if keeps_shape else ConvBNReLU(in_channels, previous, 1, stride=stride, act=None)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


class AlignedXception(nn.Module):
    """DeepLabV3+ Xception feature extractor; returns ``(high, low)`` feature maps."""

    def __init__(
        self,
        in_channels: int = 3,
        output_stride: int = 16,
        middle_repeats: int = MIDDLE_REPEATS,
        width_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"Xception output_stride must be 8 or 16, got {output_stride}")
        if middle_repeats < 1:
            raise ValueError(f"Xception middle_repeats must be at least 1, got {middle_repeats}")
        c = {width: scaled(width, width_multiplier) for width in (32, 64, 128, 256, 728, 1024, 1536, 2048)}
        entry3_stride, middle_dilation, exit_dilations = (1, 2, (2, 4)) if output_stride == 8 else (2, 1, (1, 2))
        self.output_stride = output_stride
        self.stem = nn.Sequential(ConvBNReLU(in_channels, c[32], 3, stride=2), ConvBNReLU(c[32], c[64], 3))
        self.entry1 = XceptionBlock(c[64], [c[128]] * 3, stride=2, start_with_relu=False)
        self.entry2 = XceptionBlock(c[128], [c[256]] * 3, stride=2)
        self.entry3 = XceptionBlock(c[256], [c[728]] * 3, stride=entry3_stride)
        self.middle = nn.Sequential(
            *(XceptionBlock(c[728], [c[728]] * 3, dilation=middle_dilation) for _ in range(middle_repeats))
        )
        self.exit_block = XceptionBlock(c[728], [c[728], c[1024], c[1024]], dilation=exit_dilations[0])
        self.exit_convs = nn.Sequential(
            *(
                nn.Sequential(SeparableConv(in_ch, out_ch, dilation=exit_dilations[1]), nn.ReLU(inplace=True))
                for in_ch, out_ch in ((c[1024], c[1536]), (c[1536], c[1536]), (c[1536], c[2048]))
            )
        )
        self.low_level_channels = c[128]
        self.out_channels = c[2048]
        init_weights(self)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        low = self.entry1(self.stem(x))
        x = self.middle(self.entry3(self.entry2(low)))
        return self.exit_convs(self.exit_block(x)), low


@register_encoder("xception", description="aligned Xception", options={"middle_repeats": MIDDLE_REPEATS})
def xception_encoder(input_channels: int, output_stride: int, width: float, options: Mapping[str, Any]) -> nn.Module:
    """Aligned Xception with ``options.middle_repeats`` middle blocks; low-level features from entry1 (128 channels)."""
    return AlignedXception(input_channels, output_stride, int(options["middle_repeats"]), width)
