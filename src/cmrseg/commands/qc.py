"""``cmrseg qc calibrate``: fit a run's quality-control estimate on labeled volumes (see docs/qc.md)."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import Subparsers, add_inference_options, add_qc_reference_option, add_verb, predict_settings


def add_parser(subparsers: Subparsers) -> None:
    """Add ``qc`` with its verb ``calibrate``."""
    verbs = add_verb(subparsers, "qc", "quality control of predictions: calibrate the per-case estimate",
                     "cmrseg qc calibrate --run runs/mine --data labeled_volumes/").add_subparsers(
        dest="qc_command", required=True, metavar="VERB")
    calibrate = add_verb(verbs, "calibrate", "fit the run's QC estimate (predicted Dice) on labeled volumes and store it "
                                             "in RUN/qc_model.json",
                         "cmrseg qc calibrate --run runs/mine --data ../shared/data/acdc96 --folds 5")
    calibrate.add_argument("--run", required=True, help="run folder (export it afterwards to ship the QC model)")
    calibrate.add_argument("--data", required=True, help="folder of labeled NIfTI volumes, several patients")
    calibrate.add_argument("--folds", type=int, default=5, help="patient-wise folds of the reported cross-validation")
    calibrate.add_argument("--quiet", action="store_true", help="no progress bar")
    add_qc_reference_option(calibrate, shipped_default=False)
    add_inference_options(calibrate)
    calibrate.set_defaults(handler=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> None:
    """Calibrate and print the cross-validated accuracy."""
    from cmrseg.qc.calibrate import calibrate, format_calibration

    print(format_calibration(calibrate(args.run, args.data, predict_settings(args), folds=args.folds,
                                       progress=not args.quiet, qc_reference=args.qc_reference)))
