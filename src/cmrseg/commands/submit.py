"""``cmrseg submit``: run-length encode masks as a Kaggle CSV."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import Subparsers, add_verb


def add_parser(subparsers: Subparsers) -> None:
    """Add ``submit``."""
    parser = add_verb(subparsers, "submit", "run-length encode predicted masks as a Kaggle CSV",
                      "cmrseg submit --masks preds --out submission.csv")
    parser.add_argument("--masks", required=True, help="folder of <id>_mask.png")
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Encode every mask of the folder."""
    from cmrseg.workflows.submission import submit_folder

    count = submit_folder(args.masks, args.out)
    print(f"wrote {3 * count} rows for {count} masks to {args.out}")
