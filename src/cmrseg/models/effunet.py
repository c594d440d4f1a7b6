"""EfficientNet U-Net, registered as ``EffUNet``: MONAI's FlexibleUNet on an EfficientNet encoder.

The encoder is ``model_info.backbone`` (default ``efficientnet-b3``; any of ``efficientnet-b0`` to ``-b8``
and ``-l2``), always built from random weights: MONAI would download ImageNet weights for its own
``pretrained`` flag, which cmrseg never sets (use ``model_info.pretrained`` with a local file instead).
The decoder has five upsampling stages of ``features * (8, 4, 2, 1, 1/2)`` channels, i.e. MONAI's
default (256, 128, 64, 32, 16) at ``features`` 32. Dropout is ``model_info.dropout``.
"""

from __future__ import annotations

from monai.networks.nets import FlexibleUNet
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE
from torch import nn

from cmrseg.config import ModelInfo
from cmrseg.models.registry import register_model

DEFAULT_BACKBONE = "efficientnet-b3"
BATCH_NORM_MOMENTUM = 0.1
"""MONAI's EfficientNet keeps TensorFlow's BN momentum (0.01 in torch terms): a few hundred steps on a
small dataset leave its running statistics near their initial values and eval-mode output is garbage
(0.06 validation Dice after 30 epochs on cmr96). torch's usual 0.1 tracks the data."""


def efficientnet_backbones() -> list[str]:
    """The EfficientNet encoders MONAI's FlexibleUNet knows."""
    return sorted(name for name in FLEXUNET_BACKBONE.register_dict if name.startswith("efficientnet-"))


@register_model(
    "EffUNet",
    size_divisor=32,
    description="U-Net on an EfficientNet-b3 encoder (MONAI FlexibleUNet); backbone efficientnet-b0..b8",
    accepts={"backbone", "features", "dropout"},
)
def build_effunet(info: ModelInfo, num_classes: int) -> nn.Module:
    """FlexibleUNet with an EfficientNet encoder and a ``features``-scaled decoder."""
    backbone = info.backbone or DEFAULT_BACKBONE
    if backbone not in efficientnet_backbones():
        raise ValueError(f"unknown EffUNet backbone '{backbone}', expected one of {efficientnet_backbones()}")
    decoder_channels = tuple(info.features * 8 // 2**k for k in range(5))
    net = FlexibleUNet(
        in_channels=info.network_channels,
        out_channels=num_classes,
        backbone=backbone,
        pretrained=False,
        decoder_channels=decoder_channels,
        spatial_dims=2,
        dropout=info.dropout,
    )
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = BATCH_NORM_MOMENTUM
    return net
