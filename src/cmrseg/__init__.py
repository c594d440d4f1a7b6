"""cmrseg: segmentation of cardiac MR short-axis slices into background, RV, Myo and LV."""

from cmrseg.constants import CLASS_NAMES, NUM_CLASSES, STRUCTURES
from cmrseg.errors import CmrsegError

__version__ = "0.1.0"
__all__ = ["CLASS_NAMES", "NUM_CLASSES", "STRUCTURES", "CmrsegError", "__version__"]
