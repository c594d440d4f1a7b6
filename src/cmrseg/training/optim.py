"""Optimisers and learning-rate schedules by config name."""

from __future__ import annotations

import math

import torch
from torch import nn

from cmrseg.config import OptimizerInfo, SchedulerInfo


def build_optimizer(info: OptimizerInfo, model: nn.Module) -> torch.optim.Optimizer:
    """Adam, AdamW, RMSprop or SGD (Nesterov by default, as in the origin study)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if info.name == "Adam":
        return torch.optim.Adam(params, lr=info.lr, weight_decay=info.weight_decay)
    if info.name == "AdamW":
        return torch.optim.AdamW(params, lr=info.lr, weight_decay=info.weight_decay)
    if info.name == "RMSprop":
        return torch.optim.RMSprop(params, lr=info.lr, weight_decay=info.weight_decay, momentum=info.momentum)
    return torch.optim.SGD(params, lr=info.lr, weight_decay=info.weight_decay, momentum=info.momentum,
                           nesterov=info.nesterov and info.momentum > 0)


def lr_factor(info: SchedulerInfo, step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Multiplier of the base learning rate at optimisation step ``step`` (linear warm-up, then the schedule)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    floor = info.min_lr / base_lr if base_lr else 0.0
    if info.name == "poly":
        return floor + (1 - floor) * (1 - progress) ** info.power
    if info.name == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def build_scheduler(
    info: SchedulerInfo, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau:
    """A per-step schedule (poly/cosine/none with warm-up), per-epoch ``step`` or val-loss ``plateau``."""
    if info.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=info.step_size * steps_per_epoch, gamma=info.gamma)
    if info.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=info.gamma, patience=5, min_lr=info.min_lr)
    base_lr = optimizer.param_groups[0]["lr"]
    total = epochs * steps_per_epoch
    warmup = info.warmup_epochs * steps_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(info, step, total, warmup, base_lr))
