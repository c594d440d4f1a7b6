"""cmrseg: segmentation of cardiac MR short-axis slices into background, RV, Myo and LV."""

from cmrseg.constants import CLASS_NAMES, NUM_CLASSES, STRUCTURES, VERSION
from cmrseg.errors import CmrsegError

__version__ = VERSION
__all__ = ["CLASS_NAMES", "NUM_CLASSES", "STRUCTURES", "CmrsegError", "__version__", "load_pretrained"]


def __getattr__(name: str) -> object:
    """``cmrseg.load_pretrained`` without importing torch at ``import cmrseg``."""
    if name == "load_pretrained":
        from cmrseg.pretrained_models import load_pretrained

        return load_pretrained
    raise AttributeError(f"module 'cmrseg' has no attribute {name!r}")
