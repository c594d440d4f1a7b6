"""Experiment configuration: the origin study's JSON schema plus cmrseg's own keys, validated by pydantic.

Every model, loss and optimiser choice is a string here that a registry resolves, so a JSON file
alone describes a run. Unknown keys are rejected so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cmrseg.constants import NUM_CLASSES
from cmrseg.errors import CmrsegError


Precision = Literal["float32", "bfloat16"]
"""Arithmetic of the torch network: float32, or bfloat16 autocast (faster on CPUs with AVX512-BF16 or AMX, and GPUs)."""
PRECISIONS: tuple[str, ...] = get_args(Precision)


def stack_channels(context_slices: int, other_phase: bool = False) -> int:
    """Image channels of one slice's input: the slice and its ``context_slices`` neighbours each side (``2k+1``), twice
    with ``other_phase`` (then the same slices of the patient's other phase)."""
    return (2 * context_slices + 1) * (2 if other_phase else 1)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DatasetInfo(_Strict):
    """Where the data lives. Relative paths resolve against the working directory, then the config's folder."""

    train_data_path: str | None = None
    val_data_path: str | None = None
    test_data_path: str | None = None


class SliceSampling(_Strict):
    """Relative sampling weights of a volume's base, mid and apex thirds of slices in training (volumes only)."""

    base: float = Field(1.0, ge=0.0)
    mid: float = Field(1.0, ge=0.0)
    apex: float = Field(1.0, ge=0.0)

    @model_validator(mode="after")
    def _some_weight(self) -> SliceSampling:
        if self.base + self.mid + self.apex <= 0:
            raise ValueError("slice_sampling: at least one of base, mid, apex must be above 0")
        return self


class ModelInfo(_Strict):
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


class OptimizerInfo(_Strict):
    name: Literal["Adam", "AdamW", "RMSprop", "SGD"] = "Adam"
    lr: float = Field(3e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(1e-5, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = True


def _check_class_weights(weights: list[float] | None) -> list[float] | None:
    if weights is not None and (len(weights) != NUM_CLASSES or min(weights) <= 0):
        raise ValueError(f"expected {NUM_CLASSES} positive numbers (background, RV, Myo, LV), got {weights}")
    return weights


class CriterionInfo(_Strict):
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
        return _check_class_weights(weights)

    @model_validator(mode="after")
    def _options_fit_the_loss(self) -> CriterionInfo:
        if self.class_weights is not None and (not self.include_background or self.name == "Tversky"):
            raise ValueError("class_weights needs include_background true and a loss other than Tversky")
        if self.label_smoothing > 0 and self.name not in ("CrossEntropy", "DiceCE"):
            raise ValueError(f"label_smoothing needs a loss with a cross-entropy term (CrossEntropy, DiceCE), not {self.name}")
        return self


class SchedulerInfo(_Strict):
    name: Literal["none", "poly", "cosine", "step", "plateau"] = "poly"
    warmup_epochs: int = Field(2, ge=0)
    power: float = Field(0.9, gt=0.0)
    min_lr: float = Field(0.0, ge=0.0)
    step_size: int = Field(30, ge=1)
    gamma: float = Field(0.1, gt=0.0, le=1.0)


class TransformSpec(_Strict):
    """One albumentations transform by class name; ``transforms`` nests for OneOf/SomeOf."""

    model_config = ConfigDict(extra="allow")
    name: str
    transforms: list[TransformSpec] | None = None


class EmaInfo(_Strict):
    decay: float = Field(0.99, gt=0.0, lt=1.0)


class SwaInfo(_Strict):
    """Stochastic weight averaging (Izmailov et al., 2018): the equal average of the weights at the end of
    each of the last epochs, with batch-norm statistics recomputed on the training data at the end."""

    start_fraction: float = Field(0.75, gt=0.0, lt=1.0, description="fraction of the epochs before averaging starts")
    lr: float | None = Field(
        None, gt=0.0, le=10.0, description="constant learning rate while averaging (default: keep the schedule)"
    )


class PostprocessInfo(_Strict):
    """How probabilities become a mask: weighted argmax, then optional largest-component clean-up."""

    largest_component: bool = False
    class_weights: list[float] | None = Field(
        None,
        description="one factor per class (background, RV, Myo, LV) applied to the probabilities before the argmax; "
        "above 1 a structure wins pixels it is unsure of, which raises Dice when the model under-segments it",
    )

    @field_validator("class_weights")
    @classmethod
    def _one_positive_weight_per_class(cls, weights: list[float] | None) -> list[float] | None:
        return _check_class_weights(weights)


class PlanInfo(_Strict):
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


def check_tta_scales(scales: Sequence[float]) -> list[float]:
    """The zooms of test-time augmentation, or ValueError: at least one, each in [0.5, 2]."""
    if not scales or any(not 0.5 <= scale <= 2.0 for scale in scales):
        raise ValueError(f"tta_scales must be one or more zoom factors in [0.5, 2], got {list(scales)}")
    return list(scales)


def checked_tta_scales(scales: Sequence[float]) -> list[float]:
    """:func:`check_tta_scales` for zooms given outside a config file (CLI, library): a one-line CmrsegError."""
    try:
        return check_tta_scales(scales)
    except ValueError as error:
        raise CmrsegError(str(error)) from None


class ExperimentConfig(_Strict):
    """A whole training run. The first five keys are the origin study's; the rest are cmrseg's.

    Defaults not given by a config are the recipe measured best in issue #5 (see BENCHMARKS.md):
    MONAI U-Net depth 4 / 16 features on the 2x up-sampled image (a config that names its own
    ``model_info`` gets ``input_scale`` 1 unless it asks), Adam 3e-3 + poly, DiceCE, per-image z-score, flips + affine +
    intensity augmentation, 100 epochs of batch 8. Prediction-time flip and zoom TTA, RV weighting and
    largest-component clean-up stay opt-in (``tta``, ``tta_scales``, ``postprocess``; configs/best.json turns them on):
    they change what an existing run's ``evaluate`` reports, while the training defaults only affect new runs.
    """

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
    tta: bool = False
    tta_scales: list[float] = Field(
        default_factory=lambda: [1.0], min_length=1,
        description="zoom factors of test-time augmentation (with tta): each zoomed image is also flipped, "
                    "its softmax zoomed back, and all are averaged",
    )
    postprocess: PostprocessInfo = Field(default_factory=PostprocessInfo)
    plan: PlanInfo = Field(default_factory=PlanInfo, description="overrides of the data-driven plan (cmrseg plan)")
    checkpoint_every: int = Field(10, ge=1)
    val_every: int = Field(1, ge=1, description="validate every N epochs (and after the last): validation of whole "
                                                "native slices costs about a third of a patch epoch")
    num_workers: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)
    channels_last: bool = False
    precision: Precision = Field(
        "float32", description="arithmetic of training's forward passes: bfloat16 autocast keeps weights, gradients "
                               "and optimiser state in float32; 1.55x faster epochs of configs/acdc_phase.json on an "
                               "AVX512-BF16 CPU, also fast on AMX CPUs and recent GPUs, slower where bfloat16 is "
                               "emulated")
    device: str = "auto"

    @property
    def data_split_seed(self) -> int:
        """The seed that partitions the labeled slices: ``split_seed``, or ``seed`` when unset."""
        return self.seed if self.split_seed is None else self.split_seed

    @model_validator(mode="after")
    def _one_weight_average(self) -> ExperimentConfig:
        if self.ema is not None and self.swa is not None:
            raise ValueError("ema and swa both average the weights; keep one of them")
        if self.val_every > 1 and self.scheduler.name == "plateau":
            raise ValueError("val_every above 1 leaves the plateau scheduler epochs without a validation loss")
        return self

    @field_validator("tta_scales")
    @classmethod
    def _moderate_zooms(cls, scales: list[float]) -> list[float]:
        return check_tta_scales(scales)

    @field_validator("augmentation")
    @classmethod
    def _known_preset(cls, value: str | list[TransformSpec]) -> str | list[TransformSpec]:
        from cmrseg.data.transforms import PRESETS

        if isinstance(value, str) and value not in PRESETS:
            raise ValueError(f"unknown augmentation preset '{value}', expected one of {sorted(PRESETS)}")
        return value


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "<root>"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'"
    if first["type"] == "missing":
        return f"{source}: missing key '{key}'"
    given = first.get("input")
    given_text = "" if isinstance(given, dict) else f" (got {given!r})"
    return f"{source}: bad value for '{key}': {first['msg']}{given_text}"


def config_from_dict(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Validate a config dictionary; a bad key or value raises a one-line :class:`CmrsegError`."""
    if not isinstance(data, dict):
        raise CmrsegError(f"{source}: expected a JSON object at the top level, got {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise CmrsegError(_format_validation_error(err, source)) from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a JSON config file; data paths are made absolute."""
    path = Path(path)
    if not path.is_file():
        raise CmrsegError(f"{path}: config file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CmrsegError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    config = config_from_dict(data, source=str(path))
    return resolve_paths(config, path.parent)


def _resolve(value: str | None, base: Path) -> str | None:
    if value is None or "://" in value:
        return value
    candidate = Path(value).expanduser()
    if candidate.is_absolute() or candidate.exists() or not (base / candidate).exists():
        return str(candidate.resolve())
    return str((base / candidate).resolve())


def resolve_paths(config: ExperimentConfig, base: Path) -> ExperimentConfig:
    """Make every path in the config absolute (cwd first, then relative to ``base``)."""
    info = config.dataset_info
    dataset = DatasetInfo(**{key: _resolve(getattr(info, key), base) for key in DatasetInfo.model_fields})
    model = config.model_info.model_copy(
        update={"model_path": _resolve(config.model_info.model_path, base),
                "pretrained": _resolve(config.model_info.pretrained, base)}
    )
    return config.model_copy(update={"dataset_info": dataset, "model_info": model})


def parse_override_value(raw: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true/false, null, lists), the plain string otherwise."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_assignment(item: str) -> tuple[str, Any]:
    """``"optimizer_info.lr=1e-3"`` -> ``("optimizer_info.lr", 0.001)``; a missing ``=`` is a one-line error."""
    if "=" not in item:
        raise CmrsegError(f"--set '{item}': expected KEY=VALUE")
    key, raw = item.split("=", 1)
    return key, parse_override_value(raw)


def load_config_with_overrides(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load the config at ``path`` and apply ``KEY=VALUE`` overrides (the command line's ``--set``)."""
    config = load_config(path)
    return apply_overrides(config, dict(parse_assignment(item) for item in overrides)) if overrides else config


def apply_overrides(config: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """Return a copy with dotted keys replaced (``optimizer_info.lr`` -> 1e-3), re-validated."""
    data = config.model_dump()
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise CmrsegError(f"unknown config key '{dotted}'")
            node = node[part]
        if leaf not in node and not (parents and parents[-1] == "options"):
            raise CmrsegError(f"unknown config key '{dotted}'")
        node[leaf] = value
    return config_from_dict(data, source="overrides")
