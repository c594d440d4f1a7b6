"""A run's config in three parts: what is trained (:mod:`~cmrseg.config.training`), how it predicts
(:mod:`~cmrseg.config.prediction`) and where it runs (:mod:`~cmrseg.config.runtime`), one flat JSON object
(:mod:`~cmrseg.config.experiment`) read with one-line errors and ``--set`` overrides (:mod:`~cmrseg.config.loading`)."""

from cmrseg.config.base import PRECISIONS, Precision
from cmrseg.config.experiment import ExperimentConfig
from cmrseg.config.loading import (apply_overrides, config_from_dict, load_config, load_config_with_overrides,
                                   parse_assignment, parse_override_value, resolve_paths)
from cmrseg.config.prediction import PostprocessInfo, PredictionConfig, check_tta_scales, checked_tta_scales
from cmrseg.config.runtime import RuntimeConfig
from cmrseg.config.training import (RECIPE_AUGMENTATION, CriterionInfo, DatasetInfo, EmaInfo, ModelInfo, OptimizerInfo,
                                    PlanInfo, SchedulerInfo, SliceSampling, SwaInfo, TrainingConfig, TransformSpec,
                                    stack_channels)

__all__ = [
    "PRECISIONS", "RECIPE_AUGMENTATION", "CriterionInfo", "DatasetInfo", "EmaInfo", "ExperimentConfig", "ModelInfo",
    "OptimizerInfo", "PlanInfo", "PostprocessInfo", "Precision", "PredictionConfig", "RuntimeConfig", "SchedulerInfo",
    "SliceSampling", "SwaInfo", "TrainingConfig", "TransformSpec", "apply_overrides", "check_tta_scales",
    "checked_tta_scales", "config_from_dict", "load_config", "load_config_with_overrides", "parse_assignment",
    "parse_override_value", "resolve_paths", "stack_channels",
]
