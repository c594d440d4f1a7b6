"""``cmrseg report``: a self-contained HTML page of a run or a sweep."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import Subparsers, add_engine_option, add_qc_reference_option, add_verb, predict_settings
from cmrseg.errors import CmrsegError


def add_parser(subparsers: Subparsers) -> None:
    """Add ``report``."""
    parser = add_verb(subparsers, "report", "write a self-contained HTML report of a run or a sweep",
                      "cmrseg report runs/demo --out report.html")
    parser.add_argument("folder", metavar="RUN_DIR|SWEEP_DIR", help="run folder (or an export zip) or sweep folder")
    parser.add_argument("--out", required=True, help="HTML file to write")
    parser.add_argument("--data", help="labeled folder to evaluate a run on (default: its validation split)")
    parser.add_argument("--max-images", type=int, default=24, help="overlays for this many worst images (default 24)")
    add_qc_reference_option(parser, shipped_default=False)
    add_engine_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Write the report and say where."""
    from cmrseg.workflows.report import write_report

    if args.max_images < 0:
        raise CmrsegError(f"--max-images must be 0 or more, got {args.max_images}")
    path = write_report(args.folder, args.out, args.data, args.max_images, predict_settings(args), args.qc_reference)
    print(f"wrote {path}")
