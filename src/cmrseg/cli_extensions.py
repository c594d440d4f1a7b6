"""Sub-commands that belong to later features (ensemble, cv, sweep, report) register here."""

from cmrseg import ensemble  # noqa: F401,E402
from cmrseg import report, sweep  # noqa: F401,E402
from cmrseg import crossval  # noqa: F401,E402
