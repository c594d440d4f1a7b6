"""``cmrseg export``: a trained run as one file to share, a zip with its model card or an ONNX graph."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import Subparsers, add_model_options, add_verb, model_from_args


def add_parser(subparsers: Subparsers) -> None:
    """Add ``export``."""
    parser = add_verb(subparsers, "export", "write a trained run as one file: a zip with a model card, or ONNX",
                      "cmrseg export --run runs/demo --out demo.zip", "cmrseg export --run demo.zip --out demo.onnx",
                      "cmrseg export --model acdc-native-unet --out heart.onnx")
    add_model_options(parser, "run folder (or an export zip)")
    parser.add_argument("--out", required=True, help="file to write, e.g. model.zip or model.onnx")
    parser.add_argument("--format", choices=("zip", "onnx"),
                        help="zip (weights, config, model card; any cmrseg command takes it) or onnx (a graph for "
                             "onnxruntime); default: onnx for an --out ending in .onnx, else zip")
    parser.add_argument("--checkpoint", default="best", help="best, last or a file name in the run folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Export the run and say where it went."""
    from cmrseg.workflows.export import export_run

    source = model_from_args(args)
    out = export_run(source, args.out, fmt=args.format, checkpoint=args.checkpoint)
    print(f"wrote the export of {args.run or args.model or 'the shipped model'} to {out}")
