"""``cmrseg predict``: masks (and overlays) for a folder of images."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import (Subparsers, add_cohort_options, add_inference_options, add_model_options,
                                    add_qc_reference_option, add_verb, cohort_options, model_from_args, predict_settings,
                                    qc_reference_from_args)


def add_parser(subparsers: Subparsers) -> None:
    """Add ``predict``."""
    parser = add_verb(subparsers, "predict", "write predicted masks for a folder of images (or one image or volume)",
                      "cmrseg predict --images scans/ --out preds --indices   # the shipped model",
                      "cmrseg predict --run runs/demo --images scans/ --out preds --overlays",
                      "cmrseg predict --run model.zip --images patient001_ED.nii.gz --out preds")
    add_model_options(parser)
    parser.add_argument("--images", required=True,
                        help="folder of PNG images (or a folder with image/), or of NIfTI volumes (ACDC, flat, nnU-Net); or one "
                             ".png, .nii.gz or .nii file")
    parser.add_argument("--out", required=True, help="output folder for <id>_mask.png (volumes: CASE.nii.gz)")
    parser.add_argument("--overlays", action="store_true",
                        help="also write coloured <id>_overlay.png (volumes: every slice side by side)")
    parser.add_argument("--indices", action="store_true",
                        help="volumes: also write OUT/indices.csv (per patient EDV, ESV, SV, EF, LV mass)")
    parser.add_argument("--qc-threshold", type=float, default=None, metavar="DICE",
                        help="flag a case (volume or PNG image) 'check' in cases.csv when its predicted mean Dice is "
                             "below this (default 0.80; docs/qc.md)")
    add_qc_reference_option(parser)
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty folder (foreign files are kept)")
    add_cohort_options(parser)
    add_inference_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Predict the folder and say how many masks were written."""
    from cmrseg.data.readers import reads_stacks
    from cmrseg.inference import predict_folder

    model = model_from_args(args)
    reference = qc_reference_from_args(args, reads_stacks(args.images))
    written = predict_folder(model, args.images, args.out, overlays=args.overlays, settings=predict_settings(args),
                             overwrite=args.overwrite, indices=args.indices, qc_threshold=args.qc_threshold,
                             qc_reference=reference,
                             **cohort_options(args))
    kind = "label volumes" if written and written[0].name.endswith((".nii.gz", ".nii")) else "masks"
    print(f"wrote {len(written)} {kind} to {args.out}" + (" (and indices.csv)" if args.indices else ""))
