"""``cmrseg score``: decode a submission CSV and score it against true masks."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import Subparsers


def add_parser(subparsers: Subparsers) -> None:
    """Add ``score``."""
    parser = subparsers.add_parser("score", help="decode a submission CSV and score it against true masks")
    parser.add_argument("--submission", required=True)
    parser.add_argument("--masks", required=True, help="folder of true <id>_mask.png (or a folder with mask/)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Print the Dice/HD95 table of the decoded submission."""
    from cmrseg.evaluation import format_table, score_submission

    print(format_table(score_submission(args.submission, args.masks)))
