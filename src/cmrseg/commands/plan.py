"""``cmrseg plan``: the plan that training would make from a labeled dataset, one line per choice and why."""

from __future__ import annotations

import argparse

from cmrseg.commands.common import Subparsers, add_set_option, add_verb, config_from_args, existing_folder


def add_parser(subparsers: Subparsers) -> None:
    """Add ``plan``."""
    parser = add_verb(subparsers, "plan",
                      "fingerprint a labeled dataset and print the plan train and cv make from it (spacing, patch, batch), "
                      "one line per choice and why",
                      "cmrseg plan --data ../shared/data/acdc_native",
                      "cmrseg plan --data ../shared/data/acdc_native --config configs/acdc_native.json --out plan.json")
    parser.add_argument("--data", type=existing_folder, required=True, help="labeled dataset folder")
    parser.add_argument("--config", help="JSON config whose plan keys and batch size apply (default: the defaults)")
    add_set_option(parser)
    parser.add_argument("--out", help="also write the plan, with the fingerprint, to this JSON file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """Print the plan of ``--data``; write it to ``--out``."""
    from cmrseg.config import ExperimentConfig, apply_overrides, parse_assignment
    from cmrseg.io.outputs import check_output_file
    from cmrseg.planning import plan_dataset, write_plan_file

    if args.out:
        check_output_file(args.out)  # refuse a bad --out before reading the data
    config = config_from_args(args.config, args.set)
    if config is None and args.set:
        config = apply_overrides(ExperimentConfig(), dict(parse_assignment(item) for item in args.set))
    plan = plan_dataset(args.data, config)
    fingerprint = plan.fingerprint
    if fingerprint is not None:
        print(f"fingerprint: {fingerprint.n_slices} slices, {fingerprint.n_volumes} volumes, "
              f"{fingerprint.n_patients} patients; largest slice {fingerprint.slice_shape_max[0]}x"
              f"{fingerprint.slice_shape_max[1]} px; heart extent (95th percentile) "
              + ("x".join(f"{v:.0f}" for v in fingerprint.foreground_extent_mm_p95) + " mm"
                 if fingerprint.foreground_extent_mm_p95 else
                 "x".join(f"{v:.0f}" for v in fingerprint.foreground_extent_px_p95) + " px"))
    for line in plan.describe():
        print(line)
    if args.out:
        write_plan_file(plan, args.out)
        print(f"wrote {args.out}")
