"""Quality control of predicted segmentations: which results to trust (issue #27).

- :mod:`cmrseg.qc.signals`: per-volume signals (flip-view agreement, probability margins, anatomy);
- :mod:`cmrseg.qc.model`: the estimate ``qc_dice`` (predicted mean Dice over RV, Myo, LV) from them;
- :mod:`cmrseg.qc.assess`: ``qc_flag`` (``pass``/``check``) and ``qc_reasons`` per volume and patient;
- :mod:`cmrseg.qc.calibrate`: fitting the estimate on labeled volumes and storing it with the run;
- :mod:`cmrseg.qc.predict`: predicting volumes with their signals.

docs/qc.md explains it for users.
"""

from cmrseg.qc.assess import (CHECK, DEFAULT_THRESHOLD, PASS, QcResult, assess, check_threshold, patient_reasons,
                              volume_reasons)
from cmrseg.qc.model import DEFAULT_MODEL, FEATURES, QcModel, features
from cmrseg.qc.signals import volume_signals

__all__ = ["CHECK", "DEFAULT_MODEL", "DEFAULT_THRESHOLD", "FEATURES", "PASS", "QcModel", "QcResult", "assess", "check_threshold",
           "features", "patient_reasons", "volume_reasons", "volume_signals"]
