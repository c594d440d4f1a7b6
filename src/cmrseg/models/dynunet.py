"""nnU-Net-style dynamic U-Net, registered as ``DynUNet``: MONAI's DynUNet.

Configured as nnU-Net does for 2D: ``model_info.depths`` (default 4) stride-2 levels below a stride-1
input level, 3x3 kernels everywhere, widths ``features * 2**level`` capped at 512, instance norm and
leaky ReLU, transposed-conv upsampling. With ``model_info.deep_supervision`` the ``deep_supr_num``
next-coarser decoder levels (default ``depths - 2``, at least 1) get their own 1x1 heads; in training
the network then returns a list of full-resolution logits, main output first (MONAI stacks them in one
tensor; :class:`DeepSupervisionList` unstacks it). ``options``: ``deep_supr_num``, ``res_block``
(residual conv blocks, default false), ``norm`` ("instance" or "batch"). Dropout is ``model_info.dropout``.
"""

from __future__ import annotations

from monai.networks.nets import DynUNet
from torch import Tensor, nn

from cmrseg.config import ModelInfo
from cmrseg.models.registry import model_options, register_model

DEFAULT_DEPTH = 4
MAX_WIDTH = 512
NORMS = {"instance": ("INSTANCE", {"affine": True}), "batch": "BATCH"}


def _depth(info: ModelInfo) -> int:
    return info.depths or DEFAULT_DEPTH


class DeepSupervisionList(nn.Module):
    """Turns DynUNet's training output ``N x (1+k) x C x H x W`` into a list of ``1+k`` logit maps."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        out = self.net(x)
        return list(out.unbind(dim=1)) if out.dim() == x.dim() + 1 else out


@register_model(
    "DynUNet",
    size_divisor=lambda info: 2 ** _depth(info),
    description="nnU-Net-style U-Net, depth 1-6, optional deep supervision (MONAI DynUNet)",
    accepts={"depths", "features", "dropout", "deep_supervision"},
    options=lambda info: {"deep_supr_num": max(1, _depth(info) - 2), "res_block": False, "norm": "instance"},
)
def build_dynunet(info: ModelInfo, num_classes: int) -> nn.Module:
    """DynUNet with kernels, strides and widths derived from ``depths`` and ``features``."""
    depth = _depth(info)
    options = model_options(info)
    if options["norm"] not in NORMS:
        raise ValueError(f"unknown DynUNet norm '{options['norm']}', expected one of {sorted(NORMS)}")
    supervised = int(options["deep_supr_num"])
    if info.deep_supervision and not 1 <= supervised < depth:
        raise ValueError(f"deep supervision at depth {depth} needs 1 <= deep_supr_num < {depth}, got {supervised}")
    strides = [1] + [2] * depth
    net = DynUNet(
        spatial_dims=2,
        in_channels=info.network_channels,
        out_channels=num_classes,
        kernel_size=[3] * (depth + 1),
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=[min(info.features * 2**level, MAX_WIDTH) for level in range(depth + 1)],
        dropout=info.dropout or None,
        norm_name=NORMS[options["norm"]],
        deep_supervision=info.deep_supervision,
        deep_supr_num=supervised,
        res_block=bool(options["res_block"]),
    )
    return DeepSupervisionList(net) if info.deep_supervision else net
