"""SegNet (Badrinarayanan, Kendall and Cipolla, 2017), registered as ``SegNet``.

Encoder: VGG16's 13 convolutions with batch norm in five stages (64, 128, 256, 512, 512 channels;
2, 2, 3, 3, 3 convs), each followed by a 2x2 max pool that remembers its argmax indices. Decoder: the
mirror image; each stage max-unpools with the indices of its encoder stage (sparse upsampling, no
learned upsampling and no skip features), then runs as many 3x3 conv-BN-ReLU layers as that encoder
stage, the last one narrowing to the next stage's width (512, 512 | 512, 512, 256 | 256, 256, 128 |
128, 64 | 64, classifier). The classifier is a 3x3 convolution with bias. ``options.width_multiplier``
(default 1) scales every width.
"""

from __future__ import annotations

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


def _decoder_stage(channels: int, out_channels: int, convs: int) -> nn.Sequential:
    """``convs`` 3x3 conv-BN-ReLU layers at ``channels``, the last one going to ``out_channels``."""
    return nn.Sequential(*(ConvBNReLU(channels, out_channels if i == convs - 1 else channels) for i in range(convs)))


class SegNet(nn.Module):
    """VGG16-BN encoder/decoder joined by max-pooling indices."""

    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0) -> None:
        super().__init__()
        widths = [scaled(channels, width) for channels, _ in VGG16_STAGES]
        convs = [count for _, count in VGG16_STAGES]
        self.encoder = nn.ModuleList(
            vgg_stage(c_in, c_out, n) for c_in, c_out, n in zip([in_channels, *widths[:-1]], widths, convs)
        )
        decoder = [_decoder_stage(widths[i], widths[i - 1], convs[i]) for i in range(len(widths) - 1, 0, -1)]
        decoder.append(_decoder_stage(widths[0], widths[0], convs[0] - 1))
        self.decoder = nn.ModuleList(decoder)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)
        init_weights(self)
        self.classifier = nn.Conv2d(widths[0], num_classes, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            size = x.shape[-2:]
            x, indices = self.pool(x)
            skips.append((indices, size))
        for stage, (indices, size) in zip(self.decoder, reversed(skips)):
            x = stage(self.unpool(x, indices, output_size=size))
        return self.classifier(x)


@register_model(
    "SegNet",
    size_divisor=32,
    description="SegNet: VGG16-BN encoder/decoder joined by max-unpooling; options.width_multiplier",
    options={"width_multiplier": 1.0},
)
def build_segnet(info: ModelInfo, num_classes: int) -> nn.Module:
    """SegNet with the VGG16 encoder written out."""
    options = model_options(info)
    return SegNet(info.network_channels, num_classes, width_multiplier(options["width_multiplier"]))
