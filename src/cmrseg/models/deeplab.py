"""DeepLabV3+ (Chen et al., 2018) with a selectable backbone, registered as ``DeepLab_v3``.

``model_info.backbone`` picks the feature extractor from the encoder registry (``encoders.py``; each returns
high-level and stride-4 low-level maps; ``output_stride`` 8 or 16 is reached by trading late strides for dilation)::

    drn        DRN-D-54, the origin study's (default; drn.py)   low level: layer3, 256 ch;  stride 8 only
    resnet     ResNet-101, blocks (3, 4, 23, 3) (resnet.py)     low level: layer1, 256 ch;  stride 8 or 16
    mobilenet  MobileNetV2 (mobilenet.py)                       low level: stage 2, 24 ch;  stride 8 or 16
    xception   aligned Xception, 16 middle blocks (xception.py) low level: entry1, 128 ch;  stride 8 or 16

Head, at width multiplier 1::

    ASPP        1x1 conv 256 | 3x3 conv 256 at rates 12, 24, 36 (output stride 8; 6, 12, 18 at 16)
                | image pooling (global average, 1x1 conv 256 + ReLU, broadcast back)
                -> concat 1280 -> 1x1 conv 256 + BN + ReLU -> dropout
    decoder     low-level 1x1 conv 48 + BN + ReLU; ASPP output bilinearly upsampled to stride 4
                -> concat 304 -> 3x3 conv 256 + BN + ReLU -> dropout -> 3x3 conv 256 + BN + ReLU
                -> dropout -> 1x1 classifier -> bilinear upsampling to the input size

Every convolution but the classifier and the image-pooling one is followed by BN and ReLU; the
image-pooling branch has no BN so that training works with a batch of one. Dropout is
``model_info.dropout`` (0 by default). ``options``: ``width_multiplier`` (default 1) scales every
width, backbone and head; ``blocks`` (resnet) sets the four stage lengths; ``middle_repeats``
(xception) the middle-flow length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cmrseg.config import ModelInfo
from cmrseg.models.blocks import ConvBNReLU, init_weights, scaled, width_multiplier
from cmrseg.models.encoders import build_encoder, encoder_entry
from cmrseg.models.registry import model_options, register_model

DEFAULT_BACKBONE = "drn"
ASPP_RATES_OS16: tuple[int, ...] = (1, 6, 12, 18)
ASPP_CHANNELS = 256
LOW_LEVEL_CHANNELS = 48


def aspp_rates(output_stride: int) -> tuple[int, ...]:
    """ASPP dilation rates: (1, 6, 12, 18) at output stride 16, doubled (but the 1x1 branch) at 8."""
    factor = 16 // output_stride
    return tuple(rate if rate == 1 else rate * factor for rate in ASPP_RATES_OS16)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel 1x1 and dilated 3x3 convolutions plus image pooling."""

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        self.rates = tuple(rates)
        self.branches = nn.ModuleList(
            ConvBNReLU(in_channels, out_channels, 1 if rate == 1 else 3, dilation=rate) for rate in self.rates
        )
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True)
        )
        self.project = nn.Sequential(
            ConvBNReLU(out_channels * (len(self.rates) + 1), out_channels, 1), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.image_pool(x).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([branch(x) for branch in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    """Backbone, ASPP on its high-level map, decoder fusing the stride-4 low-level map, classifier."""

    def __init__(self, backbone: nn.Module, num_classes: int, width: float = 1.0, dropout: float = 0.0) -> None:
        super().__init__()
        channels = scaled(ASPP_CHANNELS, width)
        low_channels = scaled(LOW_LEVEL_CHANNELS, width)
        self.backbone = backbone
        self.aspp = ASPP(backbone.out_channels, channels, aspp_rates(backbone.output_stride), dropout)
        self.low_level = ConvBNReLU(backbone.low_level_channels, low_channels, 1)
        self.decoder = nn.Sequential(
            ConvBNReLU(channels + low_channels, channels, 3),
            nn.Dropout(dropout),
            ConvBNReLU(channels, channels, 3),
            nn.Dropout(dropout),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        init_weights(self.aspp)
        init_weights(self.low_level)
        init_weights(self.decoder)

    def forward(self, x: Tensor) -> Tensor:
        high, low = self.backbone(x)
        low = self.low_level(low)
        high = F.interpolate(self.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(self.decoder(torch.cat([high, low], dim=1)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def deeplab_options(info: ModelInfo) -> dict[str, Any]:
    """DeepLab's own option (``width_multiplier``) plus those of the encoder named by ``info.backbone``."""
    return {"width_multiplier": 1.0, **encoder_entry(info.backbone or DEFAULT_BACKBONE).options}


def make_backbone(info: ModelInfo) -> tuple[nn.Module, float]:
    """The encoder named by ``info.backbone`` (see :mod:`cmrseg.models.encoders`) and the width multiplier."""
    options = model_options(info)
    width = width_multiplier(options.pop("width_multiplier"))
    encoder = build_encoder(info.backbone or DEFAULT_BACKBONE, info.network_channels, info.output_stride, width, options)
    return encoder, width


@register_model(
    "DeepLab_v3",
    size_divisor=lambda info: info.output_stride,
    description="DeepLabV3+ on an encoder from the encoder registry (backbone drn by default); "
    "options.width_multiplier scales all widths",
    accepts={"backbone", "output_stride", "dropout"},
    options=deeplab_options,
)
def build_deeplab(info: ModelInfo, num_classes: int) -> nn.Module:
    """DeepLabV3+ on the backbone chosen by ``info.backbone`` at ``info.output_stride``."""
    backbone, width = make_backbone(info)
    return DeepLabV3Plus(backbone, num_classes, width, info.dropout)
