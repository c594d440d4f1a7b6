"""Label conventions shared by every module."""

CLASS_NAMES: tuple[str, ...] = ("background", "RV", "Myo", "LV")
STRUCTURES: tuple[str, ...] = CLASS_NAMES[1:]
NUM_CLASSES: int = len(CLASS_NAMES)
