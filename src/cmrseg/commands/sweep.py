"""``cmrseg sweep``: one training per choice of config keys, compared in a table and plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cmrseg.commands.common import Subparsers, add_set_option, add_verb, add_worker_options


def add_parser(subparsers: Subparsers) -> None:
    """Add ``sweep``."""
    parser = add_verb(subparsers, "sweep", "train one run per value of config keys and compare them",
                      "cmrseg sweep --config experiments/optimizers.json --set optimizer_info.name=Adam,RMSprop,SGD")
    parser.add_argument("--config", required=True, help="base JSON config")
    add_set_option(parser, "KEY=V1,V2,...", "values to try for a dotted config key; several --set make a grid")
    parser.add_argument("--out", help="sweep folder (default sweeps/<config name>); rerun to resume")
    add_worker_options(parser, "trials")
    parser.add_argument("--ensemble", action="store_true",
                        help="also write SWEEP_DIR/ensemble, the soft-vote of every trained choice (e.g. of seeds)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the sweep; exit 1 when a choice failed, 130 on Ctrl-C."""
    from cmrseg.config import load_config
    from cmrseg.workflows.sweep import SweepInterrupted, parse_sets, run_sweep

    out = args.out or Path("sweeps") / Path(args.config).stem
    try:
        result = run_sweep(load_config(args.config), parse_sets(args.set), out, workers=args.workers,
                           ray_address=args.ray_address, progress=not args.quiet, ensemble=args.ensemble,
                           source=args.config)
    except SweepInterrupted as err:
        print(f"cmrseg: {err}", file=sys.stderr)
        return 130
    best = max((row for row in result.rows if row.get("dice_mean") not in ("", None)),
               key=lambda row: float(row["dice_mean"]), default=None)
    summary = f"; best mean Dice {float(best['dice_mean']):.4f} ({best['choice']})" if best else ""
    print(f"{result.trained} trained, {result.skipped} skipped, {result.failed} failed{summary}; "
          f"table and plots in {result.sweep_dir}")
    if result.ensemble_dir is not None:
        print(f"ensemble of the {len(result.rows)} runs: {result.ensemble_dir}")
    elif args.ensemble:
        print(f"cmrseg: no ensemble written: {result.failed} choice(s) failed", file=sys.stderr)
    return 1 if result.failed else 0
