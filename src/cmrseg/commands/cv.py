"""``cmrseg cv``: patient-wise k-fold cross-validation of a recipe."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import (
    Subparsers,
    add_data_option,
    add_engine_option,
    add_postprocess_option,
    add_set_option,
    add_tta_option,
    add_verb,
    add_worker_options,
    predict_settings,
    training_config,
)


def add_parser(subparsers: Subparsers) -> None:
    """Add ``cv``."""
    parser = add_verb(subparsers, "cv", "k-fold cross-validation by patient: per-fold and mean Dice/HD95",
                      "cmrseg cv --config configs/best.json --data ../shared/data/cmr96/train --folds 5 --out runs/cv")
    parser.add_argument("--config", required=True, help="JSON config of the recipe")
    add_data_option(parser)
    parser.add_argument("--folds", type=int, default=5, help="k, the number of folds (default 5)")
    parser.add_argument("--out", help="CV folder (default runs/cv-<model>-<time>); rerun with it to resume")
    parser.add_argument("--ensemble", action="store_true", help="also write OUT/ensemble, the fold models' soft vote")
    parser.add_argument("--only", type=int, action="append", metavar="K", help="run just fold K (repeatable)")
    add_set_option(parser, help_text="override a config key")
    parser.add_argument("--checkpoint", default="final",
                        help="weights to score: final (last epoch, default), best (selected on the held-out fold: optimistic)")
    add_tta_option(parser, "score with flip TTA (default: config)")
    add_postprocess_option(parser, "score with largest-component clean-up (default: config)")
    add_worker_options(parser, "folds")
    add_engine_option(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Cross-validate and print the per-fold table."""
    from cmrseg.workflows.crossval import cross_validate, format_cv_table

    config = training_config(args.config, args.set, args.data)
    result = cross_validate(config, args.folds, args.out, ensemble=args.ensemble, only=args.only,
                            settings=predict_settings(args), progress=not args.quiet, workers=args.workers,
                            ray_address=args.ray_address)
    print(format_cv_table(result.rows))
    print(f"wrote {result.out_dir / 'cv.csv'} and cv.json")
    if result.volumes is not None:
        from cmrseg.evaluation.volume_scoring import format_volume_report

        print(format_volume_report(result.volumes))
        print(f"wrote {result.out_dir / 'cv_volumes.json'}, cv_indices.csv, cv_indices_true.csv and the agreement plots")
    if result.ensemble_dir is not None:
        print(f"fold ensemble: {result.ensemble_dir} (its score on these folds is not held-out: every slice trained a member)")
