"""Model zoo. Importing this package registers every model family and encoder with the registries."""

from cmrseg.models import (  # noqa: F401  (each module registers its model family or encoder)
    attention_unet,
    deeplab,
    drn,
    dynunet,
    effunet,
    fcn,
    mobilenet,
    resnet,
    segnet,
    swin_unetr,
    unet,
    voting,
    xception,
)
from cmrseg.models.encoders import available_encoders, encoder_entry, register_encoder
from cmrseg.models.registry import (
    SegmentationNet,
    available_models,
    build_model,
    check_model_info,
    count_parameters,
    model_entry,
    register_model,
)

__all__ = [
    "SegmentationNet",
    "available_encoders",
    "available_models",
    "build_model",
    "check_model_info",
    "count_parameters",
    "encoder_entry",
    "model_entry",
    "register_encoder",
    "register_model",
]
