"""The training part of a config: what is trained (data, network, loss, optimiser, schedule, augmentation,
split, plan, seeds, epochs). A run is resumed only with the same training part (:func:`cmrseg.runs.same_training`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from cmrseg.config.base import Precision, Strict, check_class_weights


def stack_channels(context_slices: int, other_phase: bool = False) -> int:
    """Image channels of one slice's input: the slice and its ``context_slices`` neighbours each side (``2k+1``), twice
    with ``other_phase`` (then the same slices of the patient's other phase)."""
    return (2 * context_slices + 1) * (2 if other_phase else 1)


class DatasetInfo(Strict):
    """Where the data lives. Relative paths resolve against the working directory, then the config's folder."""

    train_data_path: str | None = None
    val_data_path: str | None = None
    test_data_path: str | None = None


class SliceSampling(Strict):
    """Relative sampling weights of a volume's base, mid and apex thirds of slices in training (volumes only)."""

    base: float = Field(1.0, ge=0.0)
    mid: float = Field(1.0, ge=0.0)
    apex: float = Field(1.0, ge=0.0)

    @model_validator(mode="after")
    def _some_weight(self) -> SliceSampling:
        if self.base + self.mid + self.apex <= 0:
            raise ValueError("slice_sampling: at least one of base, mid, apex must be above 0")
        return self


class ModelInfo(Strict):
    """Which network to build. ``name`` is a key of the model registry (see ``cmrseg models``)."""

    name: str = "UNet"
    input_channels: int = Field(1, ge=1, le=4)
    depths: int | None = Field(None, ge=1, le=6, description="U-Net depth (number of down-sampling steps)")
    backbone: str | None = None
    model_path: str | None = Field(None, description="extra copy of the best weights is exported here")
    features: int = Field(16, ge=4, le=256, description="width of the first stage; later stages double it (#5: 16)")
    output_stride: Literal[8, 16] = 8
    deep_supervision: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    input_scale: Literal[1, 2, 3] = Field(
        1, description="run the network on the image up-sampled this many times, average its logits back down"
    )
    pretrained: str | None = Field(None, description="local path or URL of weights to start from")
    context_slices: int = Field(
        0, ge=0, le=2, description="2.5-D: also feed this many neighbouring slices on each side (NIfTI volumes only)"
    )
    other_phase: bool = Field(
        False, description="also feed the same slice(s) of the patient's other phase (ED <-> ES) as image channels "
        "(NIfTI volumes with both phases only)",
    )
    conditions: list[Literal["phase", "position"]] = Field(
        default_factory=list,
        description="also feed the cardiac phase and/or the slice position as constant planes (NIfTI volumes only)",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="extra keyword arguments for the builder")

    @model_validator(mode="after")
    def _context_is_the_input(self) -> ModelInfo:
        if (self.context_slices or self.other_phase or self.conditions) and self.input_channels != 1:
            raise ValueError("model_info.input_channels must stay 1 with context_slices, other_phase or conditions (the "
                             "network then "
                             f"takes {self.network_channels} channels)")
        if len(set(self.conditions)) != len(self.conditions):
            raise ValueError(f"model_info.conditions names one twice: {self.conditions}")
        return self

    @property
    def image_channels(self) -> int:
        """Image channels: the slice and its ``context_slices`` neighbours each side (twice with ``other_phase``),
        or ``input_channels``."""
        if not (self.context_slices or self.other_phase):
            return self.input_channels
        return stack_channels(self.context_slices, self.other_phase)

    @property
    def network_channels(self) -> int:
        """Channels the network takes: the image channels, then one constant plane per condition."""
        return self.image_channels + len(self.conditions)


class OptimizerInfo(Strict):
    name: Literal["Adam", "AdamW", "RMSprop", "SGD"] = "Adam"
    lr: float = Field(3e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(1e-5, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = True


class CriterionInfo(Strict):
    name: Literal["CrossEntropy", "Dice", "DiceCE", "DiceFocal", "Focal", "Tversky"] = "DiceCE"
    include_background: bool = True
    lambda_dice: float = Field(1.0, ge=0.0)
    lambda_ce: float = Field(1.0, ge=0.0)
    gamma: float = Field(2.0, ge=0.0)
    alpha: float = Field(0.3, ge=0.0, le=1.0, description="Tversky false-positive weight")
    beta: float = Field(0.7, ge=0.0, le=1.0, description="Tversky false-negative weight")
    batch_dice: bool = Field(False, description="Dice over the whole batch rather than per image (nnU-Net's batch Dice)")
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="cross-entropy target smoothing (CrossEntropy and DiceCE only)"
    )
    class_weights: list[float] | None = Field(
        None, description="per-class loss weights (background, RV, Myo, LV) for the CE and Dice terms; needs include_background"
    )

    @field_validator("class_weights")
    @classmethod
    def _one_positive_weight_per_class(cls, weights: list[float] | None) -> list[float] | None:
        return check_class_weights(weights)

    @model_validator(mode="after")
    def _options_fit_the_loss(self) -> CriterionInfo:
        if self.class_weights is not None and (not self.include_background or self.name == "Tversky"):
            raise ValueError("class_weights needs include_background true and a loss other than Tversky")
        if self.label_smoothing > 0 and self.name not in ("CrossEntropy", "DiceCE"):
            raise ValueError(f"label_smoothing needs a loss with a cross-entropy term (CrossEntropy, DiceCE), not {self.name}")
        return self


class SchedulerInfo(Strict):
    name: Literal["none", "poly", "cosine", "step", "plateau"] = "poly"
    warmup_epochs: int = Field(2, ge=0)
    power: float = Field(0.9, gt=0.0)
    min_lr: float = Field(0.0, ge=0.0)
    step_size: int = Field(30, ge=1)
    gamma: float = Field(0.1, gt=0.0, le=1.0)


class TransformSpec(Strict):
    """One albumentations transform by class name; ``transforms`` nests for OneOf/SomeOf."""

    model_config = ConfigDict(extra="allow")
    name: str
    transforms: list[TransformSpec] | None = None


class EmaInfo(Strict):
    decay: float = Field(0.99, gt=0.0, lt=1.0)


class SwaInfo(Strict):
    """Stochastic weight averaging (Izmailov et al., 2018): the equal average of the weights at the end of
    each of the last epochs, with batch-norm statistics recomputed on the training data at the end."""

    start_fraction: float = Field(0.75, gt=0.0, lt=1.0, description="fraction of the epochs before averaging starts")
    lr: float | None = Field(
        None, gt=0.0, le=10.0, description="constant learning rate while averaging (default: keep the schedule)"
    )


class PlanInfo(Strict):
    """Choices of the plan that training makes from its data (:mod:`cmrseg.planning`); unset keys are planned."""

    target_spacing: float | None = Field(None, ge=0.2, le=5.0,
                                         description="in-plane mm slices are resampled to (default: the data's median)")
    patch_size: int | None = Field(None, ge=32, le=1024, multiple_of=16,
                                   description="side of the square training patches (default: from the heart's extent)")
    whole_slices: bool = Field(False, description="train on whole slices, never patches")
    foreground_fraction: float = Field(1 / 3, ge=0.0, le=1.0,
                                       description="share of training patches centred on a labeled pixel")

RECIPE_AUGMENTATION: list[dict[str, Any]] = [
    {"name": "HorizontalFlip", "p": 0.5},
    {"name": "VerticalFlip", "p": 0.5},
    {"name": "Affine", "scale": [0.8, 1.2], "rotate": [-30, 30], "translate_percent": [-0.08, 0.08], "shear": [-8, 8],
     "border_mode": "BORDER_CONSTANT", "p": 0.8},
    {"name": "RandomBrightnessContrast", "brightness_limit": 0.2, "contrast_limit": 0.2, "p": 0.5},
    {"name": "RandomGamma", "gamma_limit": [70, 150], "p": 0.5},
]
"""Default augmentation (issue #5): the flips match flip TTA; no rot90, since hearts share one orientation."""


class TrainingConfig(Strict):
    """What is trained: the keys a resume must match (:func:`cmrseg.runs.same_training`; ``epochs`` may grow).
    The first five keys are the origin study's; the rest are cmrseg's. Defaults are the recipe measured best in
    issue #5 (see BENCHMARKS.md): MONAI U-Net depth 4 / 16 features on the 2x up-sampled image (a config that names
    its own ``model_info`` gets ``input_scale`` 1 unless it asks), Adam 3e-3 + poly, DiceCE, per-image z-score,
    flips + affine + intensity augmentation, 100 epochs of batch 8."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1)
    dataset_info: DatasetInfo = Field(default_factory=DatasetInfo)
    model_info: ModelInfo = Field(default_factory=lambda: ModelInfo(input_scale=2))
    optimizer_info: OptimizerInfo = Field(default_factory=OptimizerInfo)
    criterion_info: CriterionInfo = Field(default_factory=CriterionInfo)

    seed: int = 0
    split_seed: int | None = Field(
        None, description="seed of the validation / k-fold split (default: seed); fix it to vary only the training seed"
    )
    split_mode: Literal["auto", "holdout", "folder", "full"] = "auto"
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    train_fraction: float = Field(
        1.0, gt=0.0, le=1.0,
        description="train on this share of the training split only (whole patients, nested as it grows): learning curves",
    )
    group_pairs: bool = Field(True, description="keep cmrN/cmrN+1 ED/ES pairs of one patient on one side")
    folds: int | None = Field(None, ge=2, description="k of k-fold cross-validation (set by `cmrseg cv`)")
    fold: int | None = Field(None, ge=0)
    normalization: Literal["dataset", "per_image"] = "per_image"
    augmentation: str | list[TransformSpec] = Field(
        default_factory=lambda: [TransformSpec(**spec) for spec in RECIPE_AUGMENTATION],
        description="preset name or list of transforms (default: the #5 recipe's)",
    )
    n_aug: int = Field(0, ge=0, le=64, description="extra offline augmented copies of the training set")
    slice_sampling: SliceSampling | None = Field(
        None, description="draw training slices with these weights per slice position (with replacement) instead of "
                          "shuffling each once per epoch")
    scheduler: SchedulerInfo = Field(default_factory=SchedulerInfo)
    ema: EmaInfo | None = None
    swa: SwaInfo | None = None
    grad_clip: float | None = Field(None, gt=0.0)
    plan: PlanInfo = Field(default_factory=PlanInfo, description="overrides of the data-driven plan (cmrseg plan)")
    val_every: int = Field(1, ge=1, description="validate every N epochs (and after the last): validation of whole "
                                                "native slices costs about a third of a patch epoch")
    precision: Precision = Field(
        "float32", description="arithmetic of training's forward passes: bfloat16 autocast keeps weights, gradients "
                               "and optimiser state in float32; 1.55x faster epochs of configs/acdc_phase.json on an "
                               "AVX512-BF16 CPU, also fast on AMX CPUs and recent GPUs, slower where bfloat16 is "
                               "emulated")

    @property
    def data_split_seed(self) -> int:
        """The seed that partitions the labeled slices: ``split_seed``, or ``seed`` when unset."""
        return self.seed if self.split_seed is None else self.split_seed

    @model_validator(mode="after")
    def _one_weight_average(self) -> TrainingConfig:
        if self.ema is not None and self.swa is not None:
            raise ValueError("ema and swa both average the weights; keep one of them")
        if self.val_every > 1 and self.scheduler.name == "plateau":
            raise ValueError("val_every above 1 leaves the plateau scheduler epochs without a validation loss")
        return self

    @field_validator("augmentation")
    @classmethod
    def _known_preset(cls, value: str | list[TransformSpec]) -> str | list[TransformSpec]:
        from cmrseg.data.transforms import PRESETS

        if isinstance(value, str) and value not in PRESETS:
            raise ValueError(f"unknown augmentation preset '{value}', expected one of {sorted(PRESETS)}")
        return value
