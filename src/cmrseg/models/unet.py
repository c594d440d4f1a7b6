"""U-Net with configurable depth 1-6 (the origin study's main candidate), built on MONAI's UNet."""

from __future__ import annotations

from monai.networks.nets import UNet
from torch import nn

from cmrseg.config import ModelInfo
from cmrseg.models.registry import model_options, register_model

DEFAULT_DEPTH = 4


def _depth(info: ModelInfo) -> int:
    return info.depths or DEFAULT_DEPTH


@register_model(
    "UNet",
    size_divisor=lambda info: 2 ** _depth(info),
    description="U-Net, depth 1-6 (MONAI UNet, residual units)",
    accepts={"depths", "features", "dropout"},
    options={"num_res_units": 2, "norm": "batch"},
)
def build_unet(info: ModelInfo, num_classes: int) -> nn.Module:
    """Encoder/decoder with skip connections; ``depths`` down-sampling steps, widths ``features * 2**i``."""
    depth = _depth(info)
    options = model_options(info)
    channels = tuple(min(info.features * 2**level, 1024) for level in range(depth + 1))
    return UNet(
        spatial_dims=2,
        in_channels=info.network_channels,
        out_channels=num_classes,
        channels=channels,
        strides=(2,) * depth,
        num_res_units=int(options["num_res_units"]),
        norm=options["norm"],
        dropout=info.dropout,
    )
