"""``cmrseg indices``: per-patient ventricular volumes, ejection fractions and LV mass from label volumes."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import Subparsers, add_verb


def add_parser(subparsers: Subparsers) -> None:
    """Add ``indices``."""
    parser = add_verb(subparsers, "indices", "per-patient ventricular volumes, ejection fractions and LV mass",
                      "cmrseg indices --masks preds --truth VOLUMES --out indices/indices.csv")
    parser.add_argument("--masks", required=True,
                        help="folder of label volumes: predicted CASE.nii.gz, or a labeled dataset (its _gt files)")
    parser.add_argument("--out", required=True, help="CSV file to write (one row per patient)")
    parser.add_argument("--info", help="dataset folder with ACDC Info.cfg files naming ED/ES (not needed for "
                                       "cmrseg's own predictions, which carry cases.csv)")
    parser.add_argument("--truth", help="labeled volume dataset: also write the true indices, their agreement "
                                        "(bias, SD, MAE, r) and scatter / Bland-Altman plots beside --out")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Tabulate the indices (and their agreement with the truth) and say what was written."""
    from cmrseg.metrics.clinical import format_agreement, write_indices

    result = write_indices(args.masks, args.out, info_dir=args.info, truth_dir=args.truth)
    for note in sorted({row["note"] for row in result["rows"] if row["note"]}):
        print(f"note: {note}")
    if result["agreement"]:
        print(format_agreement(result["agreement"]))
    print(f"wrote {', '.join(str(p) for p in result['written'])} ({len(result['rows'])} patients)")
