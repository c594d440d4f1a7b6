"""Small building blocks and helpers shared by the hand-written architectures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn


class ConvBNReLU(nn.Sequential):
    """``k x k`` convolution ("same" padding for stride 1), batch norm, then ``act`` (none if None).

    With ``batch_norm=False`` the convolution gets a bias instead of the batch norm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
        batch_norm: bool = True,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=not batch_norm)
        ]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


VGG16_STAGES: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
"""VGG16's five convolution stages as (width, number of 3x3 convolutions); each ends in a 2x2 max pool."""


def vgg_stage(in_channels: int, out_channels: int, convs: int, batch_norm: bool = True) -> nn.Sequential:
    """``convs`` 3x3 conv(-BN)-ReLU layers, the first going from ``in_channels`` to ``out_channels``."""
    return nn.Sequential(
        *(
            ConvBNReLU(in_channels if i == 0 else out_channels, out_channels, batch_norm=batch_norm)
            for i in range(convs)
        )
    )


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor``, never below it nor 10 % under ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def scaled(channels: int, multiplier: float) -> int:
    """Channel count ``channels * multiplier``; unchanged at multiplier 1 so default widths stay faithful."""
    return channels if multiplier == 1.0 else make_divisible(channels * multiplier)


def width_multiplier(value: Any) -> float:
    """Validate the ``width_multiplier`` option of the hand-written models."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 4.0:
        raise ValueError(f"width_multiplier must be a number in (0, 4], got {value!r}")
    return float(value)


def init_weights(module: nn.Module) -> None:
    """He-normal convolutions, unit batch norms, zero biases: the usual start for ReLU networks."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1 reduce, 3x3 with the stride and dilation, 1x1 expand by 4) with a residual."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.body = nn.Sequential(
            ConvBNReLU(in_channels, planes, 1),
            ConvBNReLU(planes, planes, 3, stride=stride, dilation=dilation),
            ConvBNReLU(planes, out_channels, 1, act=None),
        )
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = (
            ConvBNReLU(in_channels, out_channels, 1, stride=stride, act=None) if needs_projection else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def bottleneck_layer(in_channels: int, planes: int, dilations: Sequence[int], stride: int = 1) -> nn.Sequential:
    """One stage of ``len(dilations)`` bottlenecks; the first one carries the stride."""
    blocks = []
    for index, dilation in enumerate(dilations):
        blocks.append(Bottleneck(in_channels, planes, stride if index == 0 else 1, dilation))
        in_channels = planes * Bottleneck.expansion
    return nn.Sequential(*blocks)
