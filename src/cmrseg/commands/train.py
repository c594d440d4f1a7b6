"""``cmrseg train``: train (or resume) one run folder."""

from __future__ import annotations

import argparse
import sys

from cmrseg.commands.common import Subparsers, add_data_option, add_set_option, add_verb, training_config


def add_parser(subparsers: Subparsers) -> None:
    """Add ``train``."""
    parser = add_verb(subparsers, "train", "train a model from a JSON config into a run folder",
                      "cmrseg train --config configs/demo.json --data demo_out/synth/train --out runs/demo",
                      "cmrseg train --out runs/demo --resume --epochs 20",
                      "cmrseg train --config configs/acdc_native.json --out runs/native --stop-after 8",
                      "cmrseg train --config configs/acdc_native.json --out runs/native --processes 2")
    parser.add_argument("--config", help="JSON config (not needed with --resume)")
    add_data_option(parser)
    parser.add_argument("--out", help="run folder (default runs/<model>-<time>)")
    parser.add_argument("--epochs", type=int, help="override the config's epochs (with --resume: extend)")
    parser.add_argument("--resume", action="store_true", help="continue the run folder's last.pt")
    parser.add_argument("--stop-after", type=int, metavar="EPOCH",
                        help="stop after this epoch of the schedule, keeping its weights (continue later with --resume)")
    parser.add_argument("--processes", type=int, metavar="N",
                        help="split a CPU training over N local processes, each taking a part of every batch "
                             "(on 2 cores 1.7x one thread, 1.14x two threads; the config's processes, default 1)")
    add_set_option(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train; Ctrl-C exits 130 after saying how to resume."""
    from cmrseg.training.trainer import NO_VALIDATION, TrainingInterrupted, train

    config = training_config(args.config, args.set, args.data)
    try:
        result = train(config, args.out, epochs=args.epochs, resume=args.resume, progress=not args.quiet,
                       stop_after=args.stop_after, processes=args.processes)
    except TrainingInterrupted as err:
        print(f"cmrseg: {err}", file=sys.stderr)
        return 130
    if result.stopped_at is not None:
        print(f"stopped after epoch {result.stopped_at} as asked; run folder: {result.run_dir}; continue with: "
              f"cmrseg train --out {result.run_dir} --resume")
        return 0
    if result.validated:
        print(f"best validation mean Dice {result.best_dice:.4f} at epoch {result.best_epoch}; run folder: {result.run_dir}")
    else:
        print(f"trained to epoch {result.best_epoch}, {NO_VALIDATION} (split_mode full); run folder: {result.run_dir}")
    return 0
