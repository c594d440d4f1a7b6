"""The training loop of one process (:class:`Trainer`): seeded epochs over patches, validation every few epochs,
best/last checkpoints and the history, resumable from ``last.pt``."""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm.auto import tqdm

from cmrseg import runs
from cmrseg.config import ExperimentConfig
from cmrseg.constants import STRUCTURES
from cmrseg.data.dataset import DataBundle, SegmentationDataset, pad_collate, position_weights, prepare_data
from cmrseg.data.resample import resample_sample
from cmrseg.data.input_spec import InputSpec
from cmrseg.data.normalization import Normalization
from cmrseg.errors import CmrsegError
from cmrseg.training.losses import build_loss
from cmrseg.metrics import batch_dice
from cmrseg.models import build_model
from cmrseg.training.optim import build_optimizer, build_scheduler
from cmrseg.training.parallel import SINGLE, ProcessShare
from cmrseg.planning import Plan, fingerprint_samples, make_plan
from cmrseg.plots import plot_history
from cmrseg.io.atomic import atomic_path
from cmrseg.utils import precision_autocast, resolve_device, seed_everything


class TrainingInterrupted(CmrsegError):
    """Raised on Ctrl-C after the last finished epoch has been saved, so ``--resume`` can continue."""


@dataclass
class TrainResult:
    run_dir: Path
    best_dice: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_at: int | None = None
    """The epoch a ``stop_after`` run stopped at, before the end of its schedule (None: it ran to the end)."""

    @property
    def validated(self) -> bool:
        """Whether the run had a validation split (``split_mode`` full has none, and ``best_dice`` is then nan)."""
        return not math.isnan(self.best_dice)


NO_VALIDATION = "no validation split"
"""What the progress bar and the final line say instead of a Dice when ``split_mode`` is full."""


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1000 + epoch


class Trainer:
    """Owns the model, optimiser, schedule and data of one run; ``fit`` runs (or resumes) the epochs."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, progress: bool = True,
                 share: ProcessShare = SINGLE) -> None:
        self.config = config
        self.run_dir = run_dir
        self.share = share
        """This process's part of a training split over processes (:mod:`cmrseg.training.parallel`)."""
        self.progress = progress and share.main
        self.device = resolve_device(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        data = prepare_data(config)
        self.data_description = runs.describe_training_data(data.train)
        self.plan = make_plan(fingerprint_samples(data.train), config)
        for line in self.plan.describe() if self.progress else ():
            tqdm.write(f"plan: {line}")
        data = resample_bundle(data, self.plan)
        self.has_val = bool(data.val)
        normalization = Normalization.fit([s.slice_image for s in data.train], config.normalization)
        self.spec = InputSpec.from_config(config.model_info).fitted(normalization, self.plan)
        """What the network reads, built once here and stored with the run (:func:`cmrseg.runs.write_input_spec`)."""
        self.train_set = SegmentationDataset(data.train, self.spec, config.augmentation, config.n_aug, config.seed,
                                             patches=True)
        self.val_set = SegmentationDataset(data.val, self.spec) if data.val else None
        # validation slices of different sizes (native volumes) go one at a time: padding would be scored
        self.val_batch = config.batch_size if len({s.image.shape[:2] for s in data.val}) <= 1 else 1
        self.sample_weights = (position_weights(data.train, config.slice_sampling) * (config.n_aug + 1)
                               if config.slice_sampling else None)
        seed_everything(config.seed)
        self.model = build_model(config.model_info).to(self.device)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.train_model = share.wrap(self.model)
        self.optimizer = build_optimizer(config.optimizer_info, self.model)
        self.steps_per_epoch = -(-len(self.train_set) // config.batch_size)
        self.scheduler = build_scheduler(config.scheduler, self.optimizer, config.epochs, self.steps_per_epoch)
        self.loss_fn = build_loss(config.criterion_info, self.device)
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema.decay), use_buffers=True)
            if config.ema else None
        )
        self.swa = AveragedModel(self.model, use_buffers=True) if config.swa else None
        self.swa_start = int(config.epochs * config.swa.start_fraction) + 1 if config.swa else config.epochs + 1
        self.history: list[dict[str, float]] = []
        self.best_dice = -1.0
        self.best_epoch = 0
        self.start_epoch = 1

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated and saved as ``best.pt``: the SWA or EMA copy when enabled."""
        if self.swa is not None and int(self.swa.n_averaged) > 0:
            return self.swa.module
        return self.ema.module if self.ema is not None else self.model

    def _swa_constant_lr(self, epoch: int) -> bool:
        """Whether this epoch trains at SWA's constant learning rate instead of the schedule."""
        return self.config.swa is not None and self.config.swa.lr is not None and epoch >= self.swa_start

    def _average_weights(self, epoch: int) -> None:
        """Add this epoch's weights to the SWA average; after the last epoch, refit its batch-norm statistics."""
        if self.swa is None or epoch < self.swa_start:
            return
        self.swa.update_parameters(self.model)
        if epoch == self.config.epochs:
            update_bn(self._loader(self.train_set, True, epoch), self.swa, device=self.device)

    def _loader(self, dataset: SegmentationDataset, shuffle: bool, epoch: int, batch_size: int | None = None) -> DataLoader:
        """Batches of ``dataset`` (``batch_size``, default the config's); with ``shuffle`` in a random order of the
        epoch's seed, or, with ``slice_sampling``, as many slices as the set holds drawn with replacement by position
        weight."""
        generator = torch.Generator().manual_seed(_epoch_seed(self.config.seed, epoch))
        if shuffle and self.share.parallel and dataset is self.train_set:
            return self._shard_loader(generator)
        sampler = None
        if shuffle and self.sample_weights is not None and dataset is self.train_set:
            sampler = WeightedRandomSampler(self.sample_weights, len(dataset), replacement=True, generator=generator)
        return DataLoader(dataset, batch_size=batch_size or self.config.batch_size, shuffle=shuffle and sampler is None,
                          sampler=sampler, collate_fn=pad_collate, num_workers=self.config.num_workers,
                          generator=generator, drop_last=False)

    def _shard_loader(self, generator: torch.Generator) -> DataLoader:
        """This process's part of the epoch's training order (drawn alike in every process from the epoch's seed)."""
        count = len(self.train_set)
        order = (torch.multinomial(torch.as_tensor(self.sample_weights, dtype=torch.float64), count, replacement=True,
                                   generator=generator) if self.sample_weights is not None
                 else torch.randperm(count, generator=generator))
        return DataLoader(self.train_set, batch_size=self.share.batch_size(self.config.batch_size),
                          sampler=self.share.shard(order.tolist()), collate_fn=pad_collate,
                          num_workers=self.config.num_workers)

    def _to_device(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images.to(self.device, memory_format=self.memory_format), masks.to(self.device)

    def _forward(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Float32 logits of ``model``, computed under bfloat16 autocast when ``precision`` asks for it, so that
        the loss and its softmax stay in float32."""
        with precision_autocast(self.device, self.config.precision):
            logits = model(images)
        return logits.float()

    def train_epoch(self, epoch: int) -> float:
        self.model.train()
        self.train_set.set_epoch(epoch, stream=self.share.rank)
        seed_everything(_epoch_seed(self.config.seed, epoch))
        total, count = 0.0, 0
        constant_lr = self._swa_constant_lr(epoch)
        if constant_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.swa.lr  # type: ignore[union-attr]
        for images, masks in self._loader(self.train_set, True, epoch):
            images, masks = self._to_device(images, masks)
            loss = self.loss_fn(self._forward(self.train_model, images), masks)
            if not torch.isfinite(loss):
                raise CmrsegError(f"training diverged at epoch {epoch} (loss {loss.item()}); lower optimizer_info.lr")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            if not constant_lr and not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step()
            total += loss.item() * len(images)
            count += len(images)
        total, count = self.share.total(total, count)
        return total / count

    def validates(self, epoch: int) -> bool:
        """Whether ``epoch`` is validated: every ``val_every`` epochs and the last."""
        return epoch % self.config.val_every == 0 or epoch == self.config.epochs

    @torch.no_grad()
    def validate(self) -> tuple[float, dict[str, float]]:
        """Validation loss and per-image Dice of the evaluated weights (NaN without a validation split)."""
        if self.val_set is None:
            return self.validate_nothing()
        model = self.eval_model.eval()
        losses, preds, truths = [], [], []
        for images, masks in self._loader(self.val_set, False, 0, self.val_batch):
            images, masks = self._to_device(images, masks)
            logits = self._forward(model, images)
            losses.append(self.loss_fn(logits, masks).item() * len(images))
            preds.extend(logits.argmax(1).cpu().numpy())
            truths.extend(masks.cpu().numpy())
        return sum(losses) / len(self.val_set), batch_dice(preds, truths)

    @staticmethod
    def validate_nothing() -> tuple[float, dict[str, float]]:
        """The NaN loss and Dice of an epoch that is not validated (see ``val_every``)."""
        return float("nan"), {k: float("nan") for k in (*STRUCTURES, "mean")}

    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "swa": self.swa.state_dict() if self.swa is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "history": self.history,
            "best_dice": self.best_dice,
            "best_epoch": self.best_epoch,
            "model_info": self.config.model_info.model_dump(),
            "normalization": self.spec.normalization.to_dict(),
        }

    def _save_weights(self, path: Path, epoch: int, dice: float) -> None:
        runs.save_weights(path, self.eval_model.state_dict(), self.config.model_info, self.spec.normalization, epoch, dice)

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a ``last.pt``: weights, optimiser, schedule, EMA/SWA and history."""
        self.model.load_state_dict(checkpoint["model"])
        if self.ema is not None and checkpoint.get("ema") is not None:
            self.ema.load_state_dict(checkpoint["ema"])
        if self.swa is not None and checkpoint.get("swa") is not None:
            self.swa.load_state_dict(checkpoint["swa"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.history = list(checkpoint["history"])
        self.best_dice = float(checkpoint["best_dice"])
        self.best_epoch = int(checkpoint["best_epoch"])
        self.start_epoch = int(checkpoint["epoch"]) + 1

    def _record(self, epoch: int, train_loss: float, val_loss: float, dice: dict[str, float], seconds: float) -> None:
        row = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"], "train_loss": train_loss, "val_loss": val_loss,
               **{f"dice_{k}": v for k, v in dice.items()}, "seconds": seconds}
        self.history.append(row)

    def _save(self, epoch: int, dice: float, end: int) -> None:
        """Best and last state after ``epoch``; its weights too every ``checkpoint_every`` epochs and at ``end``, the
        last epoch this fit runs (the schedule's end, or where ``stop_after`` stops it)."""
        improved = not self.has_val or dice > self.best_dice
        if improved:
            self.best_dice, self.best_epoch = (dice if self.has_val else float("nan")), epoch
            self._save_weights(self.run_dir / runs.BEST_CHECKPOINT, epoch, dice)
        runs.save_training_state(self.run_dir, self._state(epoch))
        if epoch % self.config.checkpoint_every == 0 or epoch == end:
            self._save_weights(self.run_dir / runs.epoch_checkpoint(epoch), epoch, dice)
            plot_history(self.history, self.run_dir / runs.CURVE_FILE)

    def fit(self, stop_after: int | None = None) -> TrainResult:
        """Run the remaining epochs; Ctrl-C keeps the last finished epoch and raises :class:`TrainingInterrupted`.

        ``stop_after`` ends the run after that epoch of the unchanged schedule (its weights kept in ``checkpoints/``),
        so ``--resume`` later continues it exactly as if it had not stopped.
        """
        end = self.config.epochs if stop_after is None else min(stop_after, self.config.epochs)
        bar = tqdm(range(self.start_epoch, end + 1), desc="train", unit="epoch",
                   initial=self.start_epoch - 1, total=self.config.epochs, disable=not self.progress, dynamic_ncols=True)
        epoch = self.start_epoch - 1
        try:
            for epoch in bar:
                started = time.perf_counter()
                train_loss = self.train_epoch(epoch)
                self._average_weights(epoch)
                val_loss, dice = self.share.from_main(self.validate() if self.validates(epoch) and self.share.main
                                                      else self.validate_nothing())
                if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    self.scheduler.step(val_loss if self.has_val else train_loss)
                self._record(epoch, train_loss, val_loss, dice, time.perf_counter() - started)
                if self.share.main:
                    self._save(epoch, dice["mean"], end)
                    runs.write_history(self.run_dir, self.history)
                bar.set_postfix(self._progress(train_loss, val_loss, dice["mean"]))
        except KeyboardInterrupt:
            bar.close()
            raise TrainingInterrupted(
                f"interrupted during epoch {epoch}; epochs up to {epoch - 1} are saved in {self.run_dir}, "
                f"continue with: cmrseg train --out {self.run_dir} --resume"
            ) from None
        bar.close()
        if self.share.main:
            plot_history(self.history, self.run_dir / runs.CURVE_FILE)
        if end < self.config.epochs:
            return TrainResult(self.run_dir, self.best_dice, self.best_epoch, self.history, stopped_at=end)
        if self.share.main:
            self._export_model_path()
        return TrainResult(self.run_dir, self.best_dice, self.best_epoch, self.history)

    def _progress(self, train_loss: float, val_loss: float, dice: float) -> dict[str, str]:
        """The progress bar's numbers; a run without a validation split (``split_mode`` full) says so instead of nan."""
        if not self.has_val:
            return {"loss": f"{train_loss:.4f}", "val": NO_VALIDATION}
        if math.isnan(dice):
            return {"loss": f"{train_loss:.4f}", "val": f"every {self.config.val_every} epochs",
                    "best": f"{self.best_dice:.4f}"}
        return {"loss": f"{train_loss:.4f}", "val_loss": f"{val_loss:.4f}", "dice": f"{dice:.4f}",
                "best": f"{self.best_dice:.4f}"}

    def _export_model_path(self) -> None:
        target = self.config.model_info.model_path
        if target:
            with atomic_path(target) as tmp:
                shutil.copyfile(self.run_dir / runs.BEST_CHECKPOINT, tmp)


def resample_bundle(data: DataBundle, plan: Plan) -> DataBundle:
    """Training and validation slices resampled in-plane to the plan's spacing (as they are without one)."""
    target = plan.target_spacing
    if target is None:
        return data
    return DataBundle([resample_sample(s, target) for s in data.train], [resample_sample(s, target) for s in data.val])
