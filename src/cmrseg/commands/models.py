"""``cmrseg models``: the registered models with size and CPU forward time."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import Subparsers


def add_parser(subparsers: Subparsers) -> None:
    """Add ``models``."""
    parser = subparsers.add_parser("models", help="list registered models with size and CPU forward time")
    parser.add_argument("--size", type=int, default=96)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Print the model table."""
    from cmrseg.models.catalog import format_model_table, model_table

    print(format_model_table(model_table(size=args.size)))
