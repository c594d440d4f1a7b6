"""``cmrseg train``: train (or resume) one run folder."""

from __future__ import annotations

import argparse
import math
import sys

from cmrseg.commands.common import Subparsers, add_set_option, config_from_args


def add_parser(subparsers: Subparsers) -> None:
    """Add ``train``."""
    parser = subparsers.add_parser("train", help="train a model from a JSON config")
    parser.add_argument("--config", help="JSON config (not needed with --resume)")
    parser.add_argument("--out", help="run folder (default runs/<model>-<time>)")
    parser.add_argument("--epochs", type=int, help="override the config's epochs (with --resume: extend)")
    parser.add_argument("--resume", action="store_true", help="continue the run folder's last.pt")
    add_set_option(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train; Ctrl-C exits 130 after saying how to resume."""
    from cmrseg.training import TrainingInterrupted, train

    config = config_from_args(args.config, args.set)
    try:
        result = train(config, args.out, epochs=args.epochs, resume=args.resume, progress=not args.quiet)
    except TrainingInterrupted as err:
        print(f"cmrseg: {err}", file=sys.stderr)
        return 130
    if math.isnan(result.best_dice):
        print(f"no validation split (split_mode 'full'): best.pt holds the last epoch's weights; run folder: {result.run_dir}")
    else:
        print(f"best validation mean Dice {result.best_dice:.4f} at epoch {result.best_epoch}; run folder: {result.run_dir}")
    return 0
