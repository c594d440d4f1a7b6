"""The ``cmrseg`` command: the parser built from the verb modules of :mod:`cmrseg.commands`, and ``main``.

Each verb parses its arguments and calls one library function; the library never imports this module.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from cmrseg.commands import (cv, data, ensemble, evaluate, export, indices, models, plan, predict, qc, report, score,
                             submit, sweep, train)
from cmrseg.commands.common import error_text
from cmrseg.errors import CmrsegError

COMMANDS = (data, plan, train, evaluate, predict, indices, submit, score, models, export, ensemble, cv, sweep, report, qc)
"""The verb modules, in the order ``cmrseg --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every verb of :data:`COMMANDS`."""
    from cmrseg import __version__

    parser = argparse.ArgumentParser(prog="cmrseg", description="Cardiac MR short-axis segmentation (RV, Myo, LV).")
    parser.add_argument("--version", action="version", version=f"cmrseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def _one_line_warnings(message, category, filename, lineno, line=None) -> str:  # type: ignore[no-untyped-def]
    return f"cmrseg: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user mistakes print one line and exit 2, Ctrl-C exits 130."""
    warnings.formatwarning = _one_line_warnings
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CmrsegError as err:
        print(f"cmrseg: error: {error_text(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cmrseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
