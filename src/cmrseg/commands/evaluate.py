"""``cmrseg evaluate``: Dice and HD95 of a run on labeled data."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import (Subparsers, add_inference_options, add_model_options, add_qc_reference_option,
                                    add_verb, model_from_args, predict_settings, qc_reference_from_args)


def add_parser(subparsers: Subparsers) -> None:
    """Add ``evaluate``."""
    parser = add_verb(subparsers, "evaluate", "per-structure Dice and HD95 of a run on labeled data",
                      "cmrseg evaluate --run runs/demo --data demo_out/synth/val --json metrics.json")
    add_model_options(parser)
    parser.add_argument("--data", help="labeled folder with image/ and mask/, or of NIfTI volumes (default: the run's "
                                       "validation split)")
    parser.add_argument("--json", help="also write the metrics as JSON here")
    parser.add_argument("--checkpoint", default="best", help="best, last or a file name in the run folder")
    add_qc_reference_option(parser)
    add_inference_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Evaluate and print the table."""
    from cmrseg.evaluation import evaluate_run, format_table
    from cmrseg.evaluation.volume_scoring import format_volume_report, is_volume_evaluation

    model = model_from_args(args)
    reference = qc_reference_from_args(args, is_volume_evaluation(model, args.data))
    summary = evaluate_run(model, args.data, args.json, predict_settings(args), reference)
    print(format_volume_report(summary) if "per_volume" in summary else format_table(summary))
    if args.json:
        print(f"wrote {args.json}")
