"""Trained models that travel: a run as one zip (with a model card) or as an ONNX graph.

The zip holds what prediction needs and nothing else::

    cmrseg_export.json   format name and version, label names, prediction settings, file list
    config.json          the run's resolved config (model, TTA, post-processing, data, seed)
    normalization.json   intensity normalisation fitted on the training split
    data.json            what it was trained on (counts, voxel spacing), when the run has one
    plan.json            the spacing, patch and batch it trained and predicts at, when the run has one
    best.pt              the weights only (no optimiser state)
    history.csv          the run's per-epoch metrics, when it has them
    qc_model.json        the run's calibrated QC estimate (``cmrseg qc calibrate``), when it has one
    model_card.json      architecture, parameters, data, date, commit, metrics, intended use
    MODEL_CARD.md        the same, for people

Every command that takes a run folder takes the zip: it is checked and unpacked once into a cache
folder (``$CMRSEG_CACHE``, default ``~/.cache/cmrseg/exports/<hash>``) that then serves as the run folder
(:func:`cmrseg.runs.require_run_dir`). Output markers and locks of the run folder are not exported.
The entry records the size and sha256 of each file and is verified before every use (a changed entry is
unpacked again); zips are bounded before anything is inflated (:func:`check_zip_bounds`). The ONNX graph that
``--engine onnxruntime`` runs for a zip or run folder is cached there too (:func:`cmrseg.onnx_engine.cached_graph`).

The ONNX graph (opset :data:`ONNX_OPSET`) maps a normalised ``N x 1 x H x W`` float32 image to
``N x 4 x H x W`` scores whose softmax is the class probabilities; batch, height and width are
dynamic from :func:`minimum_size` up. An ensemble is one graph: every member with its own
normalisation and the weighted soft vote (its scores are log-probabilities). The model metadata
(``metadata_props``) holds the normalisation, labels, prediction defaults, the training data's
``data.json``, its ``plan.json`` (``plan``: volumes are resampled to its spacing) and the model card.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib
import io
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from cmrseg import __version__, runs
from cmrseg.config import ExperimentConfig
from cmrseg.constants import CLASS_NAMES
from cmrseg.errors import CmrsegError
from cmrseg.outputs import check_output_file, inside, temp_prefix
from cmrseg.utils import atomic_path, json_text

FORMAT = "cmrseg-model"
FORMAT_VERSION = 1
"""Version of the zip layout and of the ONNX metadata; a reader refuses newer versions."""
ONNX_OPSET = 18
INSTALL_HINT = "pip install 'cmrseg[onnx]'"
MANIFEST_FILE = "cmrseg_export.json"
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "MODEL_CARD.md"
META_PREFIX = "cmrseg_"
CACHE_RECORD = ".cmrseg-cache.json"
"""In each cache folder: the size and sha256 of every file, checked before every use."""
MAX_MEMBERS = 64
MAX_MEMBER_BYTES = 2 * 1024**3
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_RATIO = 100
RATIO_FLOOR = 1024**2
"""Bounds on an export zip, checked before inflating: members, uncompressed bytes per member and in all, and the
inflation ratio of a member above ``RATIO_FLOOR`` bytes (weights inflate about 1.1x, JSON about 5x)."""
INTENDED_USE = (
    "Research segmentation of the right ventricle (RV), myocardium (Myo) and left-ventricle cavity (LV) in 2D "
    "short-axis cardiac cine MR slices stored as 8-bit grayscale images like the training data."
)
LIMITS = (
    "Not a medical device and not validated for clinical use. The metrics in this card were measured on the stated "
    "validation split only; other scanners, sequences, long-axis views, field strengths, pathologies, paediatric "
    "hearts or very different image sizes are untested. Check every mask visually before using it."
)


def require(module: str) -> ModuleType:
    """Import an optional ONNX dependency, or fail with one line naming the pip command."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CmrsegError(f"{module} is not installed; install the ONNX extras with: {INSTALL_HINT}") from None


def export_run(run_dir: str | Path, out: str | Path, fmt: str | None = None, checkpoint: str = "best") -> Path:
    """Write ``run_dir`` (a run folder or an export zip) to ``out`` as ``fmt`` ``zip`` or ``onnx`` (default:
    onnx for an ``out`` ending in ``.onnx``, else zip), atomically.

    ``out`` is checked first (:func:`cmrseg.outputs.check_output_file`): not a folder, not inside the run."""
    fmt = fmt or ("onnx" if str(out).lower().endswith(".onnx") else "zip")
    if fmt not in ("zip", "onnx"):
        raise CmrsegError(f"--format '{fmt}': expected zip or onnx")
    out = check_output_file(out, inputs=runs.run_inputs(run_dir))
    source = runs.require_run_dir(run_dir)
    from cmrseg.inference import PredictSettings, load_run

    predictor, _ = load_run(source, PredictSettings(device="cpu", checkpoint=checkpoint))
    config = runs.read_run_config(source)
    card = model_card(source, predictor.model, checkpoint)
    with atomic_path(out) as tmp:
        if fmt == "onnx":
            plan = runs.read_plan(source)
            metadata = onnx_metadata(predictor.normalization.to_dict(), prediction_defaults(config), card,
                                     runs.read_training_data(source), None if plan is None else plan.model_dump(mode="json"))
            tmp.write_bytes(onnx_bytes(predictor.model, metadata, predictor.network_channels))
        else:
            _write_zip(tmp, source, checkpoint, prediction_defaults(config), card)
    return out


def prediction_defaults(config: ExperimentConfig) -> dict[str, Any]:
    """The run's own TTA and clean-up settings, which an export's reader resolves its options against."""
    return {"tta": config.tta, "tta_scales": list(config.tta_scales),
            "postprocess": config.postprocess.largest_component, "class_weights": config.postprocess.class_weights,
            "context_slices": config.model_info.context_slices, "conditions": list(config.model_info.conditions),
            "other_phase": config.model_info.other_phase}


def _write_zip(path: Path, run_dir: Path, checkpoint: str, settings: dict[str, Any], card: dict[str, Any]) -> None:
    saved = runs.load_checkpoint(runs.checkpoint_path(run_dir, checkpoint))
    weights = io.BytesIO()
    torch.save({k: saved[k] for k in ("model", "model_info", "normalization", "epoch", "val_dice") if k in saved}, weights)
    files: dict[str, bytes] = {
        runs.CONFIG_FILE: (run_dir / runs.CONFIG_FILE).read_bytes(),
        runs.NORMALIZATION_FILE: (run_dir / runs.NORMALIZATION_FILE).read_bytes(),
        runs.BEST_CHECKPOINT: weights.getvalue(),
        CARD_JSON: (json_text(card) + "\n").encode(),
        CARD_MARKDOWN: card_markdown(card).encode(),
    }
    for optional in (runs.DATA_FILE, runs.PLAN_FILE, runs.HISTORY_FILE, runs.QC_FILE):
        if (run_dir / optional).is_file():
            files[optional] = (run_dir / optional).read_bytes()
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "cmrseg_version": __version__,
                "labels": list(CLASS_NAMES), "prediction": settings, "files": sorted(files)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
        for name, data in files.items():
            archive.writestr(name, data)


def read_manifest(path: Path) -> dict[str, Any]:
    """The checked manifest of an export zip; one-line errors for a corrupt, foreign or too new file."""
    if path.suffix.lower() == ".onnx":
        raise CmrsegError(f"{path}: an ONNX graph holds no run config; use the zip export here, or predict/evaluate "
                          "it with --engine onnxruntime")
    if not zipfile.is_zipfile(path):
        raise CmrsegError(f"{path}: not a zip file (corrupt, truncated or another format); expected a cmrseg export")
    try:
        with zipfile.ZipFile(path) as archive:
            if MANIFEST_FILE not in archive.namelist():
                raise CmrsegError(f"{path}: not a cmrseg model export (no {MANIFEST_FILE}); make one with 'cmrseg export'")
            check_zip_bounds(path, archive)
            bad = archive.testzip()
            if bad is not None:
                raise CmrsegError(f"{path}: corrupt zip (bad checksum in {bad})")
            manifest = json.loads(archive.read(MANIFEST_FILE))
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:  # zlib: damaged deflate data before its CRC
        raise CmrsegError(f"{path}: corrupt zip ({err})") from None
    except json.JSONDecodeError:
        raise CmrsegError(f"{path}: not a cmrseg model export ({MANIFEST_FILE} is not valid JSON)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CmrsegError(f"{path}: not a cmrseg model export ({MANIFEST_FILE} does not say format '{FORMAT}')")
    check_format_version(manifest.get("format_version"), str(path))
    files = manifest.get("files")
    if not isinstance(files, list):
        raise CmrsegError(f"{path}: not a cmrseg model export (bad file list in {MANIFEST_FILE})")
    for name in files:  # plain names of the export's top folder; unpacking checks them again (outputs.inside)
        plain = isinstance(name, str) and bool(name) and Path(name).name == name and "\\" not in name
        if not plain or name in (".", "..", CACHE_RECORD):
            raise CmrsegError(f"{path}: not a cmrseg model export ({MANIFEST_FILE} lists {name!r}, expected a plain "
                              "file name)")
    missing = sorted({runs.CONFIG_FILE, runs.NORMALIZATION_FILE, runs.BEST_CHECKPOINT, *files} - names)
    if missing:
        raise CmrsegError(f"{path}: incomplete cmrseg export (missing {', '.join(missing)})")
    return manifest


def check_zip_bounds(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse, from the zip's directory and before anything is inflated, a zip with more than
    :data:`MAX_MEMBERS` members, a member above :data:`MAX_MEMBER_BYTES` or a total above :data:`MAX_TOTAL_BYTES`
    uncompressed, or a member above 1 MiB that inflates more than :data:`MAX_RATIO` times (a zip bomb). Reading
    stops at the declared sizes (zipfile checks them with the CRC), so these bound memory and disk."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CmrsegError(f"{path}: {len(infos)} zip members, a cmrseg export has at most {MAX_MEMBERS}")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > MAX_MEMBER_BYTES or (info.file_size > RATIO_FLOOR and ratio > MAX_RATIO):
            raise CmrsegError(f"{path}: member {info.filename} inflates to {info.file_size:,} bytes ({ratio:.0f}x); "
                              f"a cmrseg export member is at most {MAX_MEMBER_BYTES:,} bytes and {MAX_RATIO}x")
    total = sum(info.file_size for info in infos)
    if total > MAX_TOTAL_BYTES:
        raise CmrsegError(f"{path}: inflates to {total:,} bytes, a cmrseg export is at most {MAX_TOTAL_BYTES:,}")


def check_format_version(version: object, source: str) -> None:
    """Refuse a missing or newer export format version with one line."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CmrsegError(f"{source}: not a cmrseg model export (bad format version {version!r})")
    if version > FORMAT_VERSION:
        raise CmrsegError(f"{source}: made by a newer cmrseg (export format version {version}; this cmrseg "
                          f"{__version__} reads up to {FORMAT_VERSION}); upgrade cmrseg")


def cache_root() -> Path:
    """Where export zips are unpacked: ``$CMRSEG_CACHE`` or ``~/.cache/cmrseg/exports``."""
    return Path(os.environ.get("CMRSEG_CACHE") or Path.home() / ".cache" / "cmrseg" / "exports")


def writable_cache_root() -> Path:
    """:func:`cache_root`, created if missing, or one line naming ``$CMRSEG_CACHE`` when it is a file, lies under
    a file or is not writable."""
    root = cache_root()
    where = f"the export cache {root} ($CMRSEG_CACHE)"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CmrsegError(f"{where}: is a file, expected a folder; set CMRSEG_CACHE to a writable folder") from None
    except OSError as err:
        raise CmrsegError(f"{where}: cannot be created ({err.strerror}); set CMRSEG_CACHE to a writable folder") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise CmrsegError(f"{where}: is not writable; set CMRSEG_CACHE to a writable folder")
    return root


def file_record(path: Path) -> dict[str, Any]:
    """Size and sha256 of a file, as the cache records and verifies it."""
    data = path.read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def cache_changes(folder: Path, names: list[str]) -> str | None:
    """What differs between the files ``names`` of a cache folder and its :data:`CACHE_RECORD` (sizes first, then
    sha256), or None when they match: the check of a cached file before every use."""
    try:
        recorded = json.loads((folder / CACHE_RECORD).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return f"no readable {CACHE_RECORD}"
    for name in names:
        path, expected = folder / name, recorded.get(name) if isinstance(recorded, dict) else None
        if not isinstance(expected, dict) or not path.is_file() or path.is_symlink():
            return f"{name} missing or not recorded"
        if path.stat().st_size != expected.get("size") or file_record(path) != expected:
            return f"{name} changed since it was unpacked"
    return None


def write_cache_record(folder: Path, names: list[str]) -> None:
    """Record the size and sha256 of the files ``names`` of a cache folder (:func:`cache_changes` checks them)."""
    record = {"files": {name: file_record(folder / name) for name in names}}
    (folder / CACHE_RECORD).write_text(json.dumps(record, indent=1) + "\n")


def cache_entry(path: str | Path) -> Path:
    """The cache folder an export zip unpacks to (keyed by its content hash; not created here)."""
    return cache_root() / hashlib.sha256(Path(path).read_bytes()).hexdigest()[:20]


def unpack_export(path: str | Path) -> Path:
    """Check an export zip and unpack it once (keyed by its content hash); returns the run folder.

    The entry's files are verified on every use against the sizes and sha256 recorded when it was unpacked
    (:func:`cache_changes`); an entry that differs (a file replaced, removed or truncated) is unpacked again
    from the zip, with a warning that says what changed. The files are written to a temporary folder beside the
    cache entry, which is then renamed into place, so a crash never leaves a half-unpacked run; a concurrent
    unpack of the same zip wins or loses whole."""
    path = Path(path)
    manifest = read_manifest(path)
    names = [*manifest["files"], MANIFEST_FILE]
    target = writable_cache_root() / cache_entry(path).name
    if not target.exists():
        _unpack(path, names, target)
    elif (change := cache_changes(target, names)) is not None:
        warnings.warn(f"{target}: {change}; unpacked {path} again", stacklevel=2)
        _unpack(path, names, target)
    if not target.is_dir() or cache_changes(target, names) is not None:
        raise CmrsegError(f"{target}: could not unpack {path} into the cache; check that {cache_root()} is writable")
    return target


def _unpack(path: Path, names: list[str], target: Path) -> None:
    """Unpack the members ``names`` of the zip ``path`` into the cache folder ``target`` (:func:`fill_cache`)."""

    def write(tmp: Path) -> list[str]:
        with zipfile.ZipFile(path) as archive:
            for name in names:
                inside(tmp, name, path).write_bytes(archive.read(name))
        return names

    try:
        fill_cache(target, write)
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise CmrsegError(f"{path}: could not unpack into {target} ({err})") from None


def fill_cache(target: Path, write: Callable[[Path], list[str]]) -> None:
    """(Re)build the cache folder ``target``: ``write`` fills a temporary folder beside it and returns the names it
    wrote, whose sizes and sha256 are recorded (:data:`CACHE_RECORD`); the folder is then renamed into place and
    the one it replaces removed, so a reader sees a whole entry or none."""
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), dir=target.parent))
    old = target.with_name(f"{temp_prefix(target.name)}old")
    try:
        write_cache_record(tmp, write(tmp))
        with contextlib.suppress(OSError):
            if target.exists():
                target.rename(old)
            tmp.rename(target)
    except OSError as err:
        raise CmrsegError(f"{target}: could not write the cache entry ({err.strerror or err})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _git_commit() -> str | None:
    """The commit of the cmrseg source doing the export, when it is a git checkout."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=False)
        if result.returncode == 0:
            return result.stdout.strip()
    return None


def _training_images(path: str | None) -> int | None:
    from cmrseg.data.readers.png import list_images

    if not path:
        return None
    with contextlib.suppress(CmrsegError, OSError):
        return len(list_images(path))
    return None


def _metrics(run_dir: Path) -> dict[str, Any]:
    history = runs.read_history(run_dir)
    how = ("mean Dice per image (RV, Myo, LV; absent in both = 1) on the run's validation split after each epoch, "
           "argmax of the network without TTA or post-processing; the best row is the epoch whose weights are exported")
    if not history:
        return {"how_measured": "no training history (an ensemble or an imported run); "
                                "measure it with 'cmrseg evaluate --run MODEL --data DIR'"}
    valid = [row for row in history if not math.isnan(row.get("dice_mean", math.nan))]
    if not valid:
        return {"how_measured": "no validation split (split_mode 'full'): the exported weights are the last epoch's",
                "epochs": len(history), "best": None, "last": history[-1]}
    return {"how_measured": how, "epochs": len(history), "best": max(valid, key=lambda row: row["dice_mean"]),
            "last": history[-1]}


def model_card(run_dir: Path, model: nn.Module, checkpoint: str = "best") -> dict[str, Any]:
    """What a colleague needs to judge the model: architecture, size, data, provenance, metrics, use and limits."""
    from cmrseg.models.registry import count_parameters

    config = runs.read_run_config(run_dir)
    info = config.model_info
    weights = runs.checkpoint_path(run_dir, checkpoint)
    members = info.options.get("members") if info.name == "Ensemble" else None
    train_path = config.dataset_info.train_data_path
    recorded = runs.read_training_data(run_dir)
    images = _training_images(train_path)
    if images is None and recorded is not None:
        images = recorded.get("n_slices")
    return {
        "format_version": FORMAT_VERSION,
        "architecture": info.name,
        "model_info": info.model_dump(mode="json", exclude={"options"} if members else set()),
        "ensemble_members": [m.get("model_info", {}).get("name") for m in members] if members else None,
        "parameters": count_parameters(model),
        "labels": list(CLASS_NAMES),
        "normalization": json.loads((run_dir / runs.NORMALIZATION_FILE).read_text()),
        "training_data": {"path": train_path, "images": images, "split_mode": config.split_mode,
                          "val_fraction": config.val_fraction, "seed": config.seed, "epochs_configured": config.epochs,
                          "recorded": recorded},
        "prediction": {"tta": config.tta, "tta_scales": config.tta_scales,
                       "postprocess": config.postprocess.model_dump(mode="json")},
        "metrics": _metrics(run_dir),
        "weights_saved": _weights_saved(run_dir, weights),
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cmrseg_version": __version__,
        "cmrseg_commit": _git_commit(),
        "intended_use": INTENDED_USE,
        "limits": LIMITS,
    }


def _weights_saved(run_dir: Path, weights: Path) -> str:
    """When the exported weights were saved: an unpacked export's card says (its files carry the unpack time),
    else the checkpoint file's time."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        card = json.loads((run_dir / CARD_JSON).read_text()) if weights.name == runs.BEST_CHECKPOINT else {}
        saved = card.get("weights_saved")
        if isinstance(saved, str) and datetime.datetime.fromisoformat(saved):
            return saved
    return datetime.datetime.fromtimestamp(weights.stat().st_mtime, datetime.timezone.utc).isoformat(timespec="seconds")


def card_markdown(card: dict[str, Any]) -> str:
    """The model card as short Markdown."""
    data, metrics = card["training_data"], card["metrics"]
    lines = [
        f"# Model card: cmrseg {card['architecture']}", "",
        f"- Architecture: {card['architecture']}" + (f" of {', '.join(map(str, card['ensemble_members']))}"
                                                     if card["ensemble_members"] else ""),
        f"- Parameters: {card['parameters']:,}",
        f"- Labels: {', '.join(f'{i} {name}' for i, name in enumerate(card['labels']))}",
        f"- Normalisation: {card['normalization']['mode']} (mean {card['normalization']['mean']:.4g}, "
        f"std {card['normalization']['std']:.4g})",
        f"- Training data: {data['path']} ({data['images'] if data['images'] is not None else 'unknown number of'} images; "
        f"split {data['split_mode']}, validation fraction {data['val_fraction']}, seed {data['seed']})",
        f"- Prediction defaults: TTA {'on' if card['prediction']['tta'] else 'off'} (zooms "
        f"{card['prediction']['tta_scales']}), largest component {card['prediction']['postprocess']['largest_component']}, "
        f"class weights {card['prediction']['postprocess']['class_weights']}",
        f"- Weights saved {card['weights_saved']}; exported {card['exported']} by cmrseg {card['cmrseg_version']}"
        f" (commit {card['cmrseg_commit'] or 'unknown'})", "",
        "## Metrics", "", metrics["how_measured"] + ".", "",
    ]
    if metrics.get("best"):
        lines += ["| row | epoch | " + " | ".join(f"Dice {s}" for s in CLASS_NAMES[1:]) + " | mean |",
                  "|---|---|" + "---|" * len(CLASS_NAMES)]
        for label in ("best", "last"):
            row = metrics[label]
            dice = " | ".join(f"{row.get(f'dice_{s}', math.nan):.4f}" for s in CLASS_NAMES[1:])
            lines.append(f"| {label} | {int(row['epoch'])} | {dice} | {row.get('dice_mean', math.nan):.4f} |")
        lines.append("")
    lines += ["## Intended use", "", card["intended_use"], "", "## Limits", "", card["limits"], ""]
    return "\n".join(lines)


def onnx_metadata(normalization: dict[str, Any], settings: dict[str, Any], card: dict[str, Any] | None = None,
                  training_data: dict[str, Any] | None = None, plan: dict[str, Any] | None = None) -> dict[str, str]:
    """The ``metadata_props`` of an exported graph: all values are strings (JSON where structured);
    ``training_data`` is the run's ``data.json``, ``plan`` its ``plan.json`` (the spacing slices are resampled to)."""
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "normalization": json.dumps(normalization),
                "labels": json.dumps(list(CLASS_NAMES)), "prediction": json.dumps(settings),
                "input": "image: N x 1 x H x W float32, the normalised grayscale slice",
                "output": "scores: N x C x H x W; softmax over C gives the class probabilities"}
    if card is not None:
        metadata["model_card"] = json_text(card, indent=None)
    if training_data is not None:
        metadata["training_data"] = json.dumps(training_data)
    if plan is not None:
        metadata["plan"] = json.dumps(plan)
    return {META_PREFIX + key: value for key, value in metadata.items()}


def minimum_size(model: nn.Module) -> int:
    """Smallest height and width the exported graph takes: every padded input must exceed its padding."""
    from cmrseg.models.registry import SegmentationNet

    nets = [m for m in model.modules() if isinstance(m, SegmentationNet)]
    return max([math.ceil(net.size_divisor / net.input_scale) for net in nets] + [1])


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress logs and deprecation warnings (about torch internals, not the model)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def onnx_bytes(model: nn.Module, metadata: dict[str, str], channels: int = 1) -> bytes:
    """``model`` exported by ``torch.onnx.export`` (dynamo) with dynamic batch, height and width, plus ``metadata``;
    its input has ``channels`` slices (more than 1 for a 2.5-D model)."""
    onnx = require("onnx")
    require("onnxscript")
    min_size = minimum_size(model)
    metadata = {**metadata, f"{META_PREFIX}min_size": str(min_size), f"{META_PREFIX}opset": str(ONNX_OPSET)}
    side = max(64, 2 * min_size)
    example = torch.zeros(2, channels, side, side)
    dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("height", min=min_size),
            3: torch.export.Dim("width", min=min_size)}
    model = model.eval()
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=ONNX_OPSET, input_names=["image"],
                                    output_names=["scores"], dynamic_shapes=(dims,),
                                    verbose=False)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = "cmrseg segmentation network; see the cmrseg_* metadata for normalisation and labels"
    return proto.SerializeToString()
