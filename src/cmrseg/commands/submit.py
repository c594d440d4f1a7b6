"""``cmrseg submit``: run-length encode masks as a Kaggle CSV."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import Subparsers


def add_parser(subparsers: Subparsers) -> None:
    """Add ``submit``."""
    parser = subparsers.add_parser("submit", help="run-length encode predicted masks as a Kaggle CSV")
    parser.add_argument("--masks", required=True, help="folder of <id>_mask.png")
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Encode every mask of the folder."""
    from cmrseg.submission import submit_folder

    count = submit_folder(args.masks, args.out)
    print(f"wrote {3 * count} rows for {count} masks to {args.out}")
