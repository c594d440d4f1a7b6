"""DRN-D-54, the dilated residual network of Yu, Koltun and Funkhouser ("Dilated Residual Networks", 2017).

Structure (channels at width multiplier 1, ``stride/dilation`` per layer, output stride 8)::

    layer0  7x7 conv 16 + BN + ReLU                              s1
    layer1  1 x (3x3 conv-BN-ReLU), 16 ch                        s1
    layer2  1 x (3x3 conv-BN-ReLU), 32 ch                        s2
    layer3  3 x Bottleneck(64)  -> 256 ch                        s2   (low-level features, stride 4)
    layer4  4 x Bottleneck(128) -> 512 ch                        s2
    layer5  6 x Bottleneck(256) -> 1024 ch                       d2
    layer6  3 x Bottleneck(512) -> 2048 ch                       d4
    layer7  1 x (3x3 conv-BN-ReLU), 512 ch, no residual          d2
    layer8  1 x (3x3 conv-BN-ReLU), 512 ch, no residual          d1   (high-level features, stride 8)

The "D" variant replaces DRN-C's first residual blocks by plain convolutions and drops the residuals of
layers 7-8, which removes the gridding artefacts of dilation. The classification head is not built: the
network serves as a DeepLab backbone and returns ``(high, low)`` feature maps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from cmrseg.models.blocks import Bottleneck, ConvBNReLU, bottleneck_layer, init_weights, scaled
from cmrseg.models.encoders import register_encoder

DRN_D_54_LAYERS: tuple[int, ...] = (1, 1, 3, 4, 6, 3, 1, 1)
DRN_CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 512, 512)


def _conv_layer(in_channels: int, out_channels: int, count: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """``count`` plain 3x3 conv-BN-ReLU units without residual; the first carries the stride."""
    return nn.Sequential(
        *(
            ConvBNReLU(in_channels if i == 0 else out_channels, out_channels, 3, stride if i == 0 else 1, dilation)
            for i in range(count)
        )
    )


class DRND(nn.Module):
    """DRN-D backbone with Bottleneck layers 3-6; ``layers`` gives the block count of layers 1-8."""

    output_stride = 8

    def __init__(
        self, in_channels: int = 3, layers: tuple[int, ...] = DRN_D_54_LAYERS, width_multiplier: float = 1.0
    ) -> None:
        super().__init__()
        if len(layers) != 8 or min(layers) < 1:
            raise ValueError(f"DRN-D needs 8 block counts of at least 1, got {tuple(layers)}")
        ch = [scaled(c, width_multiplier) for c in DRN_CHANNELS]
        wide = Bottleneck.expansion
        self.layers = tuple(layers)
        self.layer0 = ConvBNReLU(in_channels, ch[0], 7)
        self.layer1 = _conv_layer(ch[0], ch[0], layers[0])
        self.layer2 = _conv_layer(ch[0], ch[1], layers[1], stride=2)
        self.layer3 = bottleneck_layer(ch[1], ch[2], [1] * layers[2], stride=2)
        self.layer4 = bottleneck_layer(ch[2] * wide, ch[3], [1] * layers[3], stride=2)
        self.layer5 = bottleneck_layer(ch[3] * wide, ch[4], [2] * layers[4])
        self.layer6 = bottleneck_layer(ch[4] * wide, ch[5], [4] * layers[5])
        self.layer7 = _conv_layer(ch[5] * wide, ch[6], layers[6], dilation=2)
        self.layer8 = _conv_layer(ch[6], ch[7], layers[7])
        self.low_level_channels = ch[2] * wide
        self.out_channels = ch[7]
        init_weights(self)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.layer2(self.layer1(self.layer0(x)))
        low = self.layer3(x)
        x = self.layer6(self.layer5(self.layer4(low)))
        return self.layer8(self.layer7(x)), low


@register_encoder("drn", description="DRN-D-54, the origin study's", output_strides=(8,))
def drn_encoder(input_channels: int, output_stride: int, width: float, options: Mapping[str, Any]) -> nn.Module:
    """DRN-D-54 at output stride 8; low-level features from layer3 (256 channels)."""
    return DRND(input_channels, width_multiplier=width)
