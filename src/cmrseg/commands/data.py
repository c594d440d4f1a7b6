"""``cmrseg data synth``: write a synthetic phantom dataset."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import Subparsers, add_verb


def add_parser(subparsers: Subparsers) -> None:
    """Add ``data`` and its actions."""
    data = add_verb(subparsers, "data", "dataset utilities (synth: synthetic phantoms)",
                    "cmrseg data synth --out data/synth --count 100").add_subparsers(dest="data_command", required=True,
                                                                                       metavar="ACTION")
    synth = add_verb(data, "synth", "write a synthetic phantom dataset in the cmr96 layout (or ED/ES NIfTI volumes)",
                     "cmrseg data synth --out data/synth --count 100 --seed 0",
                     "cmrseg data synth --volumes --out data/synth_volumes --count 20 --layout flat")
    synth.add_argument("--out", required=True, help="folder to create (image/ and mask/ inside)")
    synth.add_argument("--count", type=int, default=100, help="phantoms (with --volumes: patients) to write")
    synth.add_argument("--seed", type=int, default=0, help="random seed: one seed always gives the same set")
    synth.add_argument("--size", type=int, default=96, help="image height and width in pixels")
    synth.add_argument("--no-masks", action="store_true", help="write images only (an unlabeled set)")
    synth.add_argument("--overwrite", action="store_true", help="write into a non-empty folder (foreign files are kept)")
    synth.add_argument("--volumes", action="store_true",
                       help="write NIfTI ED/ES volumes of --count patients (1.6 x 1.6 x 8 mm voxels) instead of PNG slices")
    synth.add_argument("--layout", choices=("acdc", "flat", "nnunet"), default="acdc", help="folder layout of --volumes")
    synth.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Write the phantoms and say where."""
    from cmrseg.data.synth import write_synthetic_dataset, write_synthetic_volumes

    if args.volumes:
        out = write_synthetic_volumes(args.out, args.count, args.seed, args.size, args.layout,
                                      with_labels=not args.no_masks, overwrite=args.overwrite)
        print(f"wrote ED and ES volumes of {args.count} synthetic patients ({args.layout} layout) to {out}")
        return
    out = write_synthetic_dataset(args.out, args.count, args.seed, args.size, with_masks=not args.no_masks,
                                  overwrite=args.overwrite)
    print(f"wrote {args.count} synthetic slices to {out}")
