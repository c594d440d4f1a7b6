"""The ``cmrseg`` command. Thin: each sub-command parses arguments and calls one library function."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from cmrseg.commands import export as export_command
from cmrseg.errors import CmrsegError

Handler = Callable[[argparse.Namespace], int | None]


def _cmd_synth(args: argparse.Namespace) -> None:
    from cmrseg.data.synth import write_synthetic_dataset

    out = write_synthetic_dataset(args.out, args.count, args.seed, args.size, with_masks=not args.no_masks)
    print(f"wrote {args.count} synthetic slices to {out}")


def _load_config_with_overrides(path: str | None, overrides: Sequence[str]) -> object:
    from cmrseg.config import apply_overrides, load_config

    if path is None:
        return None
    config = load_config(path)
    return apply_overrides(config, dict(_parse_assignment(item) for item in overrides)) if overrides else config


def _parse_assignment(item: str) -> tuple[str, object]:
    if "=" not in item:
        raise CmrsegError(f"--set '{item}': expected KEY=VALUE")
    from cmrseg.config import parse_override_value

    key, raw = item.split("=", 1)
    return key, parse_override_value(raw)


def _cmd_train(args: argparse.Namespace) -> int:
    from cmrseg.training import TrainingInterrupted, train

    config = _load_config_with_overrides(args.config, args.set)
    try:
        result = train(config, args.out, epochs=args.epochs, resume=args.resume, progress=not args.quiet)  # type: ignore[arg-type]
    except TrainingInterrupted as err:
        print(f"cmrseg: {err}", file=sys.stderr)
        return 130
    print(f"best validation mean Dice {result.best_dice:.4f} at epoch {result.best_epoch}; run folder: {result.run_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from cmrseg.evaluation import evaluate_run, format_table

    summary = evaluate_run(args.run, args.data, args.json, checkpoint=args.checkpoint, tta=args.tta,
                           postprocess=args.postprocess, device=args.device, tta_scales=args.tta_scales,
                           engine=args.engine)
    print(format_table(summary))
    if args.json:
        print(f"wrote {args.json}")


def _cmd_predict(args: argparse.Namespace) -> None:
    from cmrseg.inference import predict_folder

    written = predict_folder(args.run, args.images, args.out, overlays=args.overlays, tta=args.tta,
                             postprocess=args.postprocess, device=args.device, tta_scales=args.tta_scales,
                             engine=args.engine)
    print(f"wrote {len(written)} masks to {args.out}")


def _cmd_submit(args: argparse.Namespace) -> None:
    from cmrseg.data.reader import load_mask_folder
    from cmrseg.submission import write_submission

    masks = load_mask_folder(args.masks)
    write_submission(masks, args.out)
    print(f"wrote {3 * len(masks)} rows for {len(masks)} masks to {args.out}")


def _cmd_score(args: argparse.Namespace) -> None:
    from cmrseg.evaluation import format_table, score_submission

    print(format_table(score_submission(args.submission, args.masks)))


def _cmd_models(args: argparse.Namespace) -> None:
    from cmrseg.models.catalog import format_model_table, model_table

    print(format_model_table(model_table(size=args.size)))


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="flip (and zoom) test-time augmentation (default: the run's config)")
    parser.add_argument("--tta-scales", type=float, nargs="+", metavar="ZOOM",
                        help="zooms of the TTA, e.g. 0.9 1.0 1.1; turns TTA on unless --no-tta (default: the run's tta_scales)")
    parser.add_argument("--postprocess", action=argparse.BooleanOptionalAction, default=None,
                        help="keep the largest component per structure (default: the run's config)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N]")
    parser.add_argument("--engine", choices=("torch", "onnxruntime"), default="torch",
                        help="run the network in torch, or exported to ONNX in onnxruntime on the CPU (pip install 'cmrseg[onnx]')")


def build_parser() -> argparse.ArgumentParser:
    from cmrseg import __version__

    parser = argparse.ArgumentParser(prog="cmrseg", description="Cardiac MR short-axis segmentation (RV, Myo, LV).")
    parser.add_argument("--version", action="version", version=f"cmrseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="dataset utilities").add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = data.add_parser("synth", help="write a synthetic phantom dataset in the cmr96 layout")
    synth.add_argument("--out", required=True, help="folder to create (image/ and mask/ inside)")
    synth.add_argument("--count", type=int, default=100)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", type=int, default=96, help="image height and width in pixels")
    synth.add_argument("--no-masks", action="store_true", help="write images only (an unlabeled set)")
    synth.set_defaults(handler=_cmd_synth)

    train = sub.add_parser("train", help="train a model from a JSON config")
    train.add_argument("--config", help="JSON config (not needed with --resume)")
    train.add_argument("--out", help="run folder (default runs/<model>-<time>)")
    train.add_argument("--epochs", type=int, help="override the config's epochs (with --resume: extend)")
    train.add_argument("--resume", action="store_true", help="continue the run folder's last.pt")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. optimizer_info.lr=1e-3")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=_cmd_train)

    evaluate = sub.add_parser("evaluate", help="per-structure Dice and HD95 of a run on labeled data")
    evaluate.add_argument("--run", required=True, help="run folder")
    evaluate.add_argument("--data", help="labeled folder with image/ and mask/ (default: the run's validation split)")
    evaluate.add_argument("--json", help="also write the metrics as JSON here")
    evaluate.add_argument("--checkpoint", default="best", help="best, last or a file name in the run folder")
    _add_inference_options(evaluate)
    evaluate.set_defaults(handler=_cmd_evaluate)

    predict = sub.add_parser("predict", help="write predicted masks for a folder of images")
    predict.add_argument("--run", required=True, help="run folder")
    predict.add_argument("--images", required=True, help="folder of PNG images (or a folder with image/)")
    predict.add_argument("--out", required=True, help="output folder for <id>_mask.png")
    predict.add_argument("--overlays", action="store_true", help="also write coloured <id>_overlay.png")
    _add_inference_options(predict)
    predict.set_defaults(handler=_cmd_predict)

    submit = sub.add_parser("submit", help="run-length encode predicted masks as a Kaggle CSV")
    submit.add_argument("--masks", required=True, help="folder of <id>_mask.png")
    submit.add_argument("--out", required=True, help="CSV file to write")
    submit.set_defaults(handler=_cmd_submit)

    score = sub.add_parser("score", help="decode a submission CSV and score it against true masks")
    score.add_argument("--submission", required=True)
    score.add_argument("--masks", required=True, help="folder of true <id>_mask.png (or a folder with mask/)")
    score.set_defaults(handler=_cmd_score)

    models = sub.add_parser("models", help="list registered models with size and CPU forward time")
    models.add_argument("--size", type=int, default=96)
    models.set_defaults(handler=_cmd_models)

    export_command.add_parser(sub)
    for register in _EXTENSIONS:
        register(sub)
    return parser


_EXTENSIONS: list[Callable[[argparse._SubParsersAction], None]] = []
"""Other modules' sub-commands (ensemble, cv, sweep, report) add themselves here via :func:`extension`."""


def extension(register: Callable[[argparse._SubParsersAction], None]) -> Callable[[argparse._SubParsersAction], None]:
    _EXTENSIONS.append(register)
    return register


def _one_line_warnings(message, category, filename, lineno, line=None) -> str:  # type: ignore[no-untyped-def]
    return f"cmrseg: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user mistakes print one line and exit 2, Ctrl-C exits 130."""
    warnings.formatwarning = _one_line_warnings
    from cmrseg import cli_extensions  # noqa: F401  (registers extra sub-commands)

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CmrsegError as err:
        print(f"cmrseg: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cmrseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
