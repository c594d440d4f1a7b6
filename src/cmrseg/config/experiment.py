"""A whole run's config: the training, prediction and runtime parts in one flat JSON object.

Every model, loss and optimiser choice is a string here that a registry resolves, so a JSON file alone
describes a run. Unknown keys are rejected so that a typo never silently falls back to a default. The file
stays flat (``{"epochs": 40, "tta": true, "threads": 2, ...}``), as configs and run folders have always been
written; each key belongs to one part (:attr:`ExperimentConfig.training`, ``.prediction``, ``.runtime``).
"""

from __future__ import annotations

from cmrseg.config.prediction import PredictionConfig
from cmrseg.config.runtime import RuntimeConfig
from cmrseg.config.training import TrainingConfig


class ExperimentConfig(RuntimeConfig, PredictionConfig, TrainingConfig):
    """A whole run: every key of :class:`TrainingConfig` (what is trained), :class:`PredictionConfig` (how it
    predicts by default) and :class:`RuntimeConfig` (where it runs), read and written as one flat object."""

    @property
    def training(self) -> TrainingConfig:
        """What is trained: the part a resumed run must match."""
        return TrainingConfig.model_construct(**{key: getattr(self, key) for key in TrainingConfig.model_fields})

    @property
    def prediction(self) -> PredictionConfig:
        """How the run predicts by default."""
        return PredictionConfig.model_construct(**{key: getattr(self, key) for key in PredictionConfig.model_fields})

    @property
    def runtime(self) -> RuntimeConfig:
        """Where and how the run trains."""
        return RuntimeConfig.model_construct(**{key: getattr(self, key) for key in RuntimeConfig.model_fields})
