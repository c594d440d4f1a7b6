"""``python -m cmrseg``: the same command as ``cmrseg``."""

import sys

from cmrseg.cli import main

sys.exit(main())
