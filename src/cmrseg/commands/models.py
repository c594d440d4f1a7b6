"""``cmrseg models``: the registered models with size and CPU forward time."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import Subparsers, add_verb


def add_parser(subparsers: Subparsers) -> None:
    """Add ``models``."""
    parser = add_verb(subparsers, "models", "list registered models with size and CPU forward time", "cmrseg models")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels for the forward-time measurement")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Print the model table."""
    from cmrseg.models.catalog import format_model_table, model_table

    print(format_model_table(model_table(size=args.size)))
