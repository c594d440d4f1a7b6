"""``cmrseg ensemble``: combine trained runs into one soft-voting run folder."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import Subparsers, add_verb


def add_parser(subparsers: Subparsers) -> None:
    """Add ``ensemble``."""
    parser = add_verb(subparsers, "ensemble", "soft-voting ensemble of trained runs, written as a run folder",
                      "cmrseg ensemble runs/unet runs/deeplab --out runs/ens --weights 2 1")
    parser.add_argument("runs", nargs="+", help="two or more run folders (or export zips)")
    parser.add_argument("--out", required=True, help="ensemble run folder to write")
    parser.add_argument("--weights", type=float, nargs="+", help="one weight per run (default: equal)")
    parser.add_argument("--tta", action="store_true", help="predict with flip TTA by default (at the first run's zooms)")
    parser.add_argument("--tta-scales", type=float, nargs="+", metavar="ZOOM",
                        help="zooms of that TTA, e.g. 0.9 1.0 1.1 (implies --tta; default: the first run's tta_scales)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty folder (foreign files are kept)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Write the ensemble folder and say how to use it."""
    from cmrseg.workflows.ensemble import make_ensemble

    out = make_ensemble(args.runs, args.out, args.weights, tta=args.tta or args.tta_scales is not None,
                        tta_scales=args.tta_scales, overwrite=args.overwrite)
    print(f"wrote ensemble of {len(args.runs)} runs to {out}; use it with: cmrseg evaluate --run {out} --data DIR")
