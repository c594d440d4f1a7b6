"""``cmrseg score``: decode a submission CSV and score it against true masks."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import Subparsers, add_verb


def add_parser(subparsers: Subparsers) -> None:
    """Add ``score``."""
    parser = add_verb(subparsers, "score", "decode a submission CSV and score it against true masks",
                      "cmrseg score --submission submission.csv --masks demo_out/predictions")
    parser.add_argument("--submission", required=True, help="submission CSV to decode (header id,encoding)")
    parser.add_argument("--masks", required=True, help="folder of true <id>_mask.png (or a folder with mask/)")
    parser.add_argument("--allow-partial", action="store_true", help="score only the masks with all their rows; say what is missing")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Print the Dice/HD95 table of the decoded submission."""
    from cmrseg.evaluation import format_table, partial_text, score_submission

    summary = score_submission(args.submission, args.masks, allow_partial=args.allow_partial)
    print(format_table(summary) + ("\n" + partial_text(summary) if args.allow_partial else ""))
