"""Splits and the torch Dataset that feeds training (the input it builds is :mod:`cmrseg.data.input_spec`'s)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from cmrseg.config import ExperimentConfig, SliceSampling
from cmrseg.data.input_spec import InputSpec
from cmrseg.data.patches import crop, patch_origin
from cmrseg.data.slicing import Sample
from cmrseg.data.transforms import build_pipeline
from cmrseg.errors import CmrsegError


def patient_group(sample_id: str) -> str:
    """Group key keeping ED/ES pairs together: cmr1+cmr2 -> 'cmr#1', cmr3+cmr4 -> 'cmr#2'."""
    match = re.fullmatch(r"(.*?)(\d+)", sample_id)
    if not match:
        return sample_id
    return f"{match.group(1)}#{(int(match.group(2)) + 1) // 2}"


GroupMap = Mapping[str, str]
"""Patient of each sample id, for slices that know theirs (volume datasets); others fall back to ``patient_group``."""


def _group_key(sample_id: str, group_pairs: bool, groups: GroupMap | None) -> str:
    if groups and sample_id in groups:
        return groups[sample_id]
    return patient_group(sample_id) if group_pairs else sample_id


def _shuffled_groups(ids: list[str], seed: int, group_pairs: bool, groups: GroupMap | None = None) -> list[list[str]]:
    by_group: dict[str, list[str]] = {}
    for sample_id in ids:
        by_group.setdefault(_group_key(sample_id, group_pairs, groups), []).append(sample_id)
    keys = sorted(by_group)
    order = np.random.default_rng(seed).permutation(len(keys))
    return [by_group[keys[index]] for index in order]


def holdout_split(ids: list[str], val_fraction: float, seed: int, group_pairs: bool = True,
                  groups_of: GroupMap | None = None) -> tuple[list[str], list[str]]:
    """Random train/validation split of ``ids`` by patient group with a fixed seed."""
    groups = _shuffled_groups(ids, seed, group_pairs, groups_of)
    if len(groups) < 2:
        raise CmrsegError(f"need at least 2 patients to split into train and validation, found {len(groups)}")
    n_val = min(len(groups) - 1, max(1, math.ceil(val_fraction * len(groups))))
    val = {i for group in groups[:n_val] for i in group}
    return [i for i in ids if i not in val], [i for i in ids if i in val]


def kfold_split(ids: list[str], folds: int, fold: int, seed: int, group_pairs: bool = True,
                groups_of: GroupMap | None = None) -> tuple[list[str], list[str]]:
    """Fold ``fold`` of a ``folds``-fold split by patient group: (train ids, validation ids)."""
    if not 0 <= fold < folds:
        raise CmrsegError(f"fold must be in 0..{folds - 1}, got {fold}")
    groups = _shuffled_groups(ids, seed, group_pairs, groups_of)
    if len(groups) < folds:
        raise CmrsegError(f"{folds}-fold cross-validation needs at least {folds} patients, found {len(groups)}")
    val = {i for index, group in enumerate(groups) if index % folds == fold for i in group}
    return [i for i in ids if i not in val], [i for i in ids if i in val]


def share_of_patients(ids: list[str], fraction: float, seed: int, group_pairs: bool = True,
                      groups_of: GroupMap | None = None) -> list[str]:
    """``fraction`` of ``ids`` in whole patient groups (at least one), drawn with ``seed``.

    A smaller fraction keeps a subset of what a larger one keeps, so a learning curve adds data, not noise.
    """
    if fraction >= 1.0:
        return ids
    groups = _shuffled_groups(ids, seed, group_pairs, groups_of)
    kept = {i for group in groups[: max(1, round(fraction * len(groups)))] for i in group}
    return [i for i in ids if i in kept]


@dataclass
class DataBundle:
    train: list[Sample]
    val: list[Sample]


def sample_groups(samples: list[Sample]) -> dict[str, str]:
    """The patient of every slice that knows it (slices of volumes): splits keep a patient's slices together."""
    return {sample.id: sample.group for sample in samples if sample.group is not None}


def _select(samples: list[Sample], ids: list[str]) -> list[Sample]:
    wanted = set(ids)
    return [sample for sample in samples if sample.id in wanted]


def prepare_data(config: ExperimentConfig) -> DataBundle:
    """Load the labeled data named by the config and split it as ``split_mode``/``folds`` say, then keep
    ``train_fraction`` of the training side (the validation side stays whole)."""
    bundle = _split_data(config)
    kept = share_of_patients([s.id for s in bundle.train], config.train_fraction, config.data_split_seed, config.group_pairs,
                             sample_groups(bundle.train))
    return DataBundle(_select(bundle.train, kept), bundle.val)


def _split_data(config: ExperimentConfig) -> DataBundle:
    info = config.dataset_info
    if not info.train_data_path:
        raise CmrsegError("config: missing key 'dataset_info.train_data_path'")
    spec = InputSpec.from_config(config.model_info)
    train = spec.read_samples(info.train_data_path)
    mode = config.split_mode
    if mode == "auto":
        mode = "folder" if info.val_data_path else "holdout"
    if config.folds is not None:
        train_ids, val_ids = kfold_split([s.id for s in train], config.folds, config.fold or 0, config.data_split_seed,
                                       config.group_pairs, sample_groups(train))
        return DataBundle(_select(train, train_ids), _select(train, val_ids))
    if mode == "holdout":
        train_ids, val_ids = holdout_split([s.id for s in train], config.val_fraction, config.data_split_seed, config.group_pairs,
                                           sample_groups(train))
        return DataBundle(_select(train, train_ids), _select(train, val_ids))
    val = spec.read_samples(info.val_data_path) if info.val_data_path else []
    if mode == "folder":
        if not val:
            raise CmrsegError("config: split_mode 'folder' needs 'dataset_info.val_data_path'")
        return DataBundle(train, val)
    return DataBundle(train + val, [])


def position_weights(samples: list[Sample], sampling: SliceSampling) -> list[float]:
    """Sampling weight of each slice: ``sampling``'s weight of its third (base, mid, apex) of its volume."""
    from cmrseg.data.slicing import slice_positions

    if any(s.volume is None or s.slice_index is None for s in samples):
        raise CmrsegError("slice_sampling needs a volume dataset (slices that know their volume), not PNG slices")
    counts: dict[str, int] = {}
    for sample in samples:
        counts[sample.volume] = max(counts.get(sample.volume, 0), sample.slice_index + 1)  # type: ignore[index,operator]
    positions = {volume: slice_positions(n) for volume, n in counts.items()}
    weights = [float(getattr(sampling, positions[s.volume][s.slice_index])) for s in samples]  # type: ignore[index]
    if samples and not any(weights):
        found = sorted({position for names in positions.values() for position in names})
        raise CmrsegError(f"slice_sampling {sampling.model_dump()} selects no training slice (the training volumes "
                          f"have {', '.join(found)} slices only); give one of those a weight above 0")
    return weights


class SegmentationDataset(Dataset):
    """Samples as ``(image CxHxW float32, mask HxW int64)`` tensors, augmented on-line each epoch; each augmented
    uint8 stack becomes the network's input through :meth:`InputSpec.network_input` (the one place training and
    prediction build it: each channel normalised on its own, then the condition planes).

    ``n_aug`` adds that many offline augmented copies of every sample (drawn once, with fixed seeds),
    as the origin study did; on-line augmentation applies on top of them.

    With ``patches`` and a plan patch size in the spec (:mod:`cmrseg.planning`) each item is a patch of its augmented,
    normalised slice, the plan's ``foreground_fraction`` of them centred on a labeled pixel
    (:mod:`cmrseg.data.patches`), drawn from the epoch's seed so a resumed run draws the same patches.
    """

    def __init__(
        self,
        samples: list[Sample],
        spec: InputSpec,
        augmentation: str | list[Any] = "none",
        n_aug: int = 0,
        seed: int = 0,
        patches: bool = False,
    ) -> None:
        if any(sample.mask is None for sample in samples):
            raise CmrsegError("training samples must all have masks")
        self.spec = spec
        self.seed = seed
        self.epoch = 0
        self.patch_size = tuple(spec.patch_size) if patches and spec.patch_size else None
        self.foreground_fraction = spec.plan.foreground_fraction if spec.plan is not None else 1 / 3
        self.pipeline = build_pipeline(augmentation, seed=seed)
        values = [sample.conditions(spec.conditions) for sample in samples]
        self.items: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
            (s.image, s.mask, v) for s, v in zip(samples, values, strict=True)]  # type: ignore[misc]
        for copy in range(1, n_aug + 1):
            offline = build_pipeline(augmentation, seed=seed * 7919 + copy)
            for sample, value in zip(samples, values, strict=True):
                result = offline(image=sample.image, mask=sample.mask)
                self.items.append((result["image"], result["mask"], value))

    def set_epoch(self, epoch: int, stream: int = 0) -> None:
        """Re-seed on-line augmentation so epoch ``e`` draws the same transforms in a resumed run; ``stream`` (a
        training process's rank) gives each process of a parallel training its own draws."""
        self.pipeline.set_random_seed(self.seed * 100_003 + epoch + stream * 1_000_003)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask, values = self.items[index]
        result = self.pipeline(image=image, mask=mask)
        tensor = self.spec.network_input(self.spec.channels_first(result["image"])[None], values[None])[0]
        mask = result["mask"]
        if self.patch_size:
            tensor, mask = self._patch(tensor, mask, index)
        return torch.from_numpy(np.ascontiguousarray(tensor)), torch.from_numpy(np.ascontiguousarray(mask)).long()

    def _patch(self, image: np.ndarray, mask: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The training patch of item ``index`` this epoch; beyond the slice each channel reads its darkest value (a
        condition plane its constant)."""
        rng = np.random.default_rng((self.seed, self.epoch, index))
        origin = patch_origin(mask, self.patch_size, rng, rng.random() < self.foreground_fraction)  # type: ignore[arg-type]
        darkest = image.min(axis=(1, 2), keepdims=True)
        window = crop(image - darkest, origin, self.patch_size) + darkest  # type: ignore[arg-type]
        return window, crop(mask, origin, self.patch_size)  # type: ignore[arg-type]


def pad_collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack samples, zero-padding (image) and background-padding (mask) to the largest size in the batch."""
    height = max(image.shape[-2] for image, _ in batch)
    width = max(image.shape[-1] for image, _ in batch)
    images = torch.zeros(len(batch), batch[0][0].shape[0], height, width)
    masks = torch.zeros(len(batch), height, width, dtype=torch.long)
    for index, (image, mask) in enumerate(batch):
        images[index, :, : image.shape[-2], : image.shape[-1]] = image
        masks[index, : mask.shape[-2], : mask.shape[-1]] = mask
    return images, masks
