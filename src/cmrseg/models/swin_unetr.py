"""Swin UNETR (Hatamizadeh et al., 2022) in 2D, registered as ``SwinUNETR``: MONAI's SwinUNETR.

A Swin transformer encoder (patch size 2, stages of depth (2, 2, 2, 2) with (3, 6, 12, 24) heads,
7x7 windows) feeds a convolutional U-Net decoder. Its ``feature_size`` (embedding width, a multiple
of 12) is ``3/4 * features``: 24 (MONAI's default) at the default ``features`` 32, so ``features``
must be a multiple of 16; ``options.feature_size`` sets it directly. ``options.use_v2`` adds the
residual conv blocks of Swin UNETR V2. Dropout is ``model_info.dropout``. Needs the ``einops`` package.
"""

from __future__ import annotations

from monai.networks.nets import SwinUNETR
from monai.utils import optional_import
from torch import nn

from cmrseg.config import ModelInfo
from cmrseg.models.registry import model_options, register_model


def feature_size(info: ModelInfo, override: object = None) -> int:
    """Swin embedding width: ``options.feature_size`` or ``3/4 * features``; a multiple of 12 either way."""
    if override is None:
        if info.features % 16:
            raise ValueError(
                f"SwinUNETR uses feature_size = 3/4 * features, which must be a multiple of 12, "
                f"so features must be a multiple of 16 (got {info.features}); or set options.feature_size"
            )
        return info.features * 3 // 4
    if isinstance(override, bool) or not isinstance(override, int) or override < 12 or override % 12:
        raise ValueError(f"SwinUNETR feature_size must be a positive multiple of 12, got {override!r}")
    return override


@register_model(
    "SwinUNETR",
    size_divisor=32,
    description="Swin UNETR 2D (MONAI SwinUNETR), feature_size 3/4 * features",
    accepts={"features", "dropout"},
    options={"feature_size": None, "use_v2": False},
)
def build_swin_unetr(info: ModelInfo, num_classes: int) -> nn.Module:
    """Swin transformer encoder with a convolutional decoder, in 2D."""
    options = model_options(info)
    width = feature_size(info, options["feature_size"])
    if not optional_import("einops")[1]:
        raise ValueError("SwinUNETR needs the einops package (pip install einops)")
    return SwinUNETR(
        in_channels=info.network_channels,
        out_channels=num_classes,
        feature_size=width,
        spatial_dims=2,
        drop_rate=info.dropout,
        use_v2=bool(options["use_v2"]),
    )
