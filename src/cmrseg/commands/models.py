"""``cmrseg models``: the registered models with size and CPU forward time."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import Subparsers, add_verb


def add_parser(subparsers: Subparsers) -> None:
    """Add ``models``."""
    parser = add_verb(subparsers, "models", "list registered architectures with size and CPU forward time, or the "
                      "shipped models with their cards", "cmrseg models", "cmrseg models --pretrained")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels for the forward-time measurement")
    parser.add_argument("--pretrained", action="store_true",
                        help="list the models shipped with cmrseg (ready to predict, no training) with their model cards")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Print the model table, or the shipped models."""
    if args.pretrained:
        from cmrseg.pretrained_models import format_catalog

        print(format_catalog())
        return
    from cmrseg.models.catalog import format_model_table, model_table

    print(format_model_table(model_table(size=args.size)))
