"""Attention U-Net (Oktay et al., 2018), registered as ``AttentionUNet``: MONAI's AttentionUnet.

``model_info.depths`` (default 4) down-sampling steps with widths ``features * 2**level`` (capped at
1024); attention gates weight each skip connection by the coarser decoder features. Dropout is
``model_info.dropout``.
"""

from __future__ import annotations

from monai.networks.nets import AttentionUnet
from torch import nn

from cmrseg.config import ModelInfo
from cmrseg.models.registry import register_model

DEFAULT_DEPTH = 4
MAX_WIDTH = 1024


def _depth(info: ModelInfo) -> int:
    return info.depths or DEFAULT_DEPTH


@register_model(
    "AttentionUNet",
    size_divisor=lambda info: 2 ** _depth(info),
    description="Attention U-Net, depth 1-6 (MONAI AttentionUnet)",
    accepts={"depths", "features", "dropout"},
)
def build_attention_unet(info: ModelInfo, num_classes: int) -> nn.Module:
    """U-Net whose skip connections pass through additive attention gates."""
    depth = _depth(info)
    return AttentionUnet(
        spatial_dims=2,
        in_channels=info.network_channels,
        out_channels=num_classes,
        channels=[min(info.features * 2**level, MAX_WIDTH) for level in range(depth + 1)],
        strides=[2] * depth,
        dropout=info.dropout,
    )
