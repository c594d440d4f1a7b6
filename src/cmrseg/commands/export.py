"""``cmrseg export``: a trained run as one file to share, a zip with its model card or an ONNX graph."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export``."""
    parser = subparsers.add_parser("export", help="write a trained run as one file: a zip with a model card, or ONNX")
    parser.add_argument("--run", required=True, help="run folder (or an export zip)")
    parser.add_argument("--out", required=True, help="file to write, e.g. model.zip or model.onnx")
    parser.add_argument("--format", choices=("zip", "onnx"),
                        help="zip (weights, config, model card; any cmrseg command takes it) or onnx (a graph for "
                             "onnxruntime); default: onnx for an --out ending in .onnx, else zip")
    parser.add_argument("--checkpoint", default="best", help="best, last or a file name in the run folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Export the run and say where it went."""
    from cmrseg.export import export_run

    out = export_run(args.run, args.out, fmt=args.format, checkpoint=args.checkpoint)
    print(f"wrote the export of {args.run} to {out}")
