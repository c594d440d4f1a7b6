"""Label conventions shared by every module, and the version of cmrseg (``cmrseg.__version__``)."""

VERSION = "0.1.0"
"""cmrseg's version, as pyproject.toml says it; exports and model cards record it."""

CLASS_NAMES: tuple[str, ...] = ("background", "RV", "Myo", "LV")
STRUCTURES: tuple[str, ...] = CLASS_NAMES[1:]
NUM_CLASSES: int = len(CLASS_NAMES)
