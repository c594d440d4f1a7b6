"""Loss functions by config name, from MONAI with the origin study's arguments (softmax, one-hot target)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.losses import DeepSupervisionLoss, DiceCELoss, DiceFocalLoss, DiceLoss, FocalLoss, TverskyLoss
from torch import nn

from cmrseg.config import CriterionInfo

LossFn = Callable[[torch.Tensor | list[torch.Tensor], torch.Tensor], torch.Tensor]


class _CrossEntropy(nn.Module):
    """Cross-entropy taking the MONAI-style ``N x 1 x H x W`` target."""

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.loss = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, target[:, 0].long())


def _base_loss(info: CriterionInfo) -> nn.Module:
    weight = None if info.class_weights is None else torch.tensor(info.class_weights, dtype=torch.float32)
    common = {"to_onehot_y": True, "include_background": info.include_background, "weight": weight}
    dice = {**common, "batch": info.batch_dice}
    builders: dict[str, Callable[[], nn.Module]] = {
        "CrossEntropy": lambda: _CrossEntropy(weight, info.label_smoothing),
        "Dice": lambda: DiceLoss(softmax=True, **dice),
        "DiceCE": lambda: DiceCELoss(softmax=True, lambda_dice=info.lambda_dice, lambda_ce=info.lambda_ce,
                                   label_smoothing=info.label_smoothing, **dice),
        "DiceFocal": lambda: DiceFocalLoss(softmax=True, gamma=info.gamma, lambda_dice=info.lambda_dice, lambda_focal=info.lambda_ce, **dice),
        "Focal": lambda: FocalLoss(gamma=info.gamma, use_softmax=True, **common),
        "Tversky": lambda: TverskyLoss(softmax=True, alpha=info.alpha, beta=info.beta, to_onehot_y=True,
                                       include_background=info.include_background, batch=info.batch_dice),
    }
    return builders[info.name]()


def build_loss(info: CriterionInfo, device: torch.device | str = "cpu") -> LossFn:
    """Return ``loss(logits_or_list, mask NxHxW)``; a list of outputs (deep supervision) is weighted 1, 1/2, 1/4...

    ``device`` is where the training data lives: class weights are buffers of the loss modules.
    """
    base = _base_loss(info).to(device)
    deep = DeepSupervisionLoss(base, weight_mode="exp")

    def loss(output: torch.Tensor | list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        target = mask[:, None]
        if isinstance(output, list):
            return deep(output, target.float())
        return base(output, target)

    return loss
