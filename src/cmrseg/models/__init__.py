"""Model zoo. Importing this package registers every model family with the registry."""

from cmrseg.models import (  # noqa: F401  (each module registers its model family)
    attention_unet,
    deeplab,
    dynunet,
    effunet,
    ensemble,
    fcn,
    segnet,
    swin_unetr,
    unet,
)
from cmrseg.models.registry import (
    SegmentationNet,
    available_models,
    build_model,
    count_parameters,
    model_entry,
    register_model,
)

__all__ = ["SegmentationNet", "available_models", "build_model", "count_parameters", "model_entry", "register_model"]
