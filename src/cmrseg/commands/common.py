"""Argparse helpers shared by several verbs: prediction options and ``--config``/``--set`` loading."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from cmrseg.config import ExperimentConfig, apply_overrides, load_config_with_overrides
from cmrseg.errors import CmrsegError
from cmrseg.inference.settings import ENGINES, PRECISIONS, PredictSettings

Subparsers = argparse._SubParsersAction

RUN_HELP = "run folder, export zip (cmrseg export) or, with --engine onnxruntime, an exported .onnx file"
"""What ``--run`` takes wherever a verb predicts with a trained model."""


OPTION_FLAGS = {
    "epochs": "--epochs", "resume": "--resume", "run_dir": "--out", "overrides": "--set", "workers": "--workers",
    "folds": "--folds", "only": "--only", "ensemble": "--ensemble", "checkpoint": "--checkpoint", "engine": "--engine",
    "precision": "--precision", "count": "--count", "size": "--size", "seed": "--seed", "layout": "--layout",
    "weights": "--weights", "fmt": "--format", "qc_threshold": "--qc-threshold", "data": "--data",
    "indices": "--indices", "overwrite": "--overwrite", "out_dir": "--out", "config": "--config",
    "ray_address": "--ray-address",
}
"""The flag of each library parameter that library errors name (``CmrsegError.key``)."""


def error_text(err: CmrsegError) -> str:
    """A library error in the command line's words: a message that starts with the parameter it is about
    (``epochs must be at least 1``) starts with its flag instead (``--epochs must be ...``); any other names the
    flag at its end."""
    message, flag = str(err), OPTION_FLAGS.get(err.key or "")
    if flag is None or err.key is None:
        return message
    if message.startswith(err.key + " ") or message.startswith(err.key + ":"):
        return flag + message[len(err.key):]
    return f"{message} ({flag})"


def add_model_options(parser: argparse.ArgumentParser, run_help: str = RUN_HELP) -> None:
    """``--run`` (a trained run) or ``--model NAME`` (a shipped model); with neither, the default shipped model."""
    parser.add_argument("--run", help=run_help + "; default: the shipped model (--model)")
    parser.add_argument("--model", metavar="NAME",
                        help="a shipped model by name (cmrseg models --pretrained lists them; default acdc-native-unet "
                             "when --run is not given)")


def model_from_args(args: argparse.Namespace) -> str | Path:
    """The run (or shipped model's zip) a verb predicts with; says in one line when it is a shipped model."""
    from cmrseg.pretrained_models import model_source

    source, line = model_source(args.run, args.model)
    if line:
        print(line, flush=True)
    return source


def add_verb(subparsers: Subparsers, name: str, summary: str, *examples: str) -> argparse.ArgumentParser:
    """Add the verb ``name``: ``summary`` is its line in ``cmrseg --help`` and the description of its own ``--help``,
    which ends with the ``examples`` (command lines)."""
    epilog = "example" + ("s" if len(examples) > 1 else "") + ":\n" + "\n".join(f"  {line}" for line in examples)
    return subparsers.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                                 epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)


def existing_folder(text: str) -> Path:
    """An ``argparse`` type for a folder that must exist: a missing one is argparse's one-line usage error (exit 2)."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {text}")
    return path


def add_tta_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--tta/--no-tta`` (default None: the run's or config's own setting)."""
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help=help_text)


def add_postprocess_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--postprocess/--no-postprocess`` (default None: the run's or config's own setting)."""
    parser.add_argument("--postprocess", action=argparse.BooleanOptionalAction, default=None, help=help_text)


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """The options of every verb that predicts with a run: TTA, its zooms, clean-up, device and engine."""
    add_tta_option(parser, "flip (and zoom) test-time augmentation (default: the run's config)")
    parser.add_argument("--tta-scales", type=float, nargs="+", metavar="ZOOM",
                        help="zooms of the TTA, e.g. 0.9 1.0 1.1; turns TTA on unless --no-tta (default: the run's tta_scales)")
    add_postprocess_option(parser, "keep the largest component per structure (default: the run's config)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N]")
    add_engine_option(parser)


def add_qc_reference_option(parser: argparse.ArgumentParser, shipped_default: bool = True) -> None:
    """``--qc-reference MODEL`` (a second model whose agreement joins the volumes' quality control, docs/qc.md) and,
    where a shipped model brings its own (``shipped_default``), ``--no-qc-reference``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--qc-reference", metavar="MODEL",
                       help="volumes: a second, independently trained model (run folder, export zip or shipped model "
                            "name, e.g. acdc-native-unet-qc) predicts each volume too; its agreement sharpens the QC "
                            "estimate (docs/qc.md) at the cost of a second prediction"
                            + ("; default: the shipped model's own QC reference when predicting with a shipped model"
                               if shipped_default else ""))
    if shipped_default:
        group.add_argument("--no-qc-reference", action="store_true",
                           help="volumes: no QC reference, not even a shipped model's own (faster, a coarser QC estimate)")


def qc_reference_from_args(args: argparse.Namespace, volumes: bool) -> str | None:
    """The QC reference a verb uses: ``--qc-reference``; else, predicting volumes with a shipped model, the QC reference
    its catalog entry names (said in one line), unless ``--no-qc-reference``."""
    if args.qc_reference is not None or getattr(args, "no_qc_reference", True) or args.run is not None or not volumes:
        return args.qc_reference
    from cmrseg.pretrained_models import find

    reference = find(args.model).qc_reference
    if reference:
        print(f"quality control: each volume is also predicted by the shipped QC reference model {reference} "
              "(--no-qc-reference skips it)", flush=True)
    return reference


def add_engine_option(parser: argparse.ArgumentParser) -> None:
    """``--engine torch|onnxruntime`` (default torch) and ``--precision``: what runs the network, and how, when the verb predicts."""
    parser.add_argument("--engine", choices=ENGINES, default="torch",
                        help="run the network in torch, or exported to ONNX in onnxruntime on the CPU "
                             "(pip install 'cmrseg[onnx]')")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="torch arithmetic: bfloat16 autocast is faster where the CPU has AVX512-BF16/AMX "
                             "(or on a GPU), with masks that differ on a few border pixels (BENCHMARKS.md, ONNX speed)")


def predict_settings(args: argparse.Namespace) -> PredictSettings:
    """The :class:`PredictSettings` of the options a verb parsed (those it lacks keep their defaults)."""
    return PredictSettings(**{f.name: getattr(args, f.name) for f in fields(PredictSettings) if hasattr(args, f.name)})


def add_set_option(parser: argparse.ArgumentParser, metavar: str = "KEY=VALUE",
                   help_text: str = "override a config key, e.g. optimizer_info.lr=1e-3") -> None:
    """Repeatable ``--set`` collected into ``args.set``."""
    parser.add_argument("--set", action="append", default=[], metavar=metavar, help=help_text)


def config_from_args(path: str | None, overrides: Sequence[str]) -> ExperimentConfig | None:
    """The ``--config`` file with the ``--set`` overrides applied, or None without ``--config``."""
    return None if path is None else load_config_with_overrides(path, overrides)


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """``--data DIR``: the labeled training folder, instead of the config's ``dataset_info.train_data_path``."""
    parser.add_argument("--data", metavar="DIR",
                        help="labeled training folder (PNG image/ + mask/, or NIfTI volumes); overrides the config's "
                             "dataset_info.train_data_path")


def training_config(path: str | None, overrides: Sequence[str], data: str | None) -> ExperimentConfig | None:
    """:func:`config_from_args` with ``--data`` as its training folder, which must exist: a config written on another
    machine names a folder that is not here, and the error says how to give one."""
    config = config_from_args(path, overrides)
    if config is None:
        if data is not None:
            raise CmrsegError("--data needs --config (a resumed run trains on the data of its config.json)")
        return None
    if data is not None:
        config = apply_overrides(config, {"dataset_info.train_data_path": str(Path(data).expanduser().resolve())})
    folder = config.dataset_info.train_data_path
    if not folder:
        raise CmrsegError(f"{path}: missing key 'dataset_info.train_data_path'; give --data DIR or set it")
    if not Path(folder).is_dir():
        raise CmrsegError(f"{folder}: training data folder not found; give --data DIR or set "
                          "dataset_info.train_data_path")
    return config


def add_worker_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--workers N`` and ``--ray-address ADDR``: where the trainings of ``what`` run."""
    parser.add_argument("--workers", type=int, default=1,
                        help=f"{what} trained in parallel local processes (torch threads split between them)")
    parser.add_argument("--ray-address", help=f"train {what} as Ray tasks on this cluster (auto, ray://host:port, "
                        "or local for a throwaway one); needs pip install 'cmrseg[distributed]'")


def add_cohort_options(parser: argparse.ArgumentParser) -> None:
    """``--workers``, ``--ray-address`` and ``--quiet`` of ``predict``: where a folder of volumes is predicted."""
    parser.add_argument("--workers", type=int, default=1,
                        help="volumes: predict in N local processes, each loading the model once (torch threads "
                             "split between them)")
    parser.add_argument("--ray-address", help="volumes: predict on N Ray actors (--workers) of this cluster (auto, "
                        "ray://host:port, or local for a throwaway one); needs pip install 'cmrseg[distributed]'")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def cohort_options(args: argparse.Namespace) -> dict[str, object]:
    """The keyword arguments of :func:`add_cohort_options` for :func:`cmrseg.inference.predict_folder`."""
    return {"workers": args.workers, "ray_address": args.ray_address, "progress": not args.quiet}
