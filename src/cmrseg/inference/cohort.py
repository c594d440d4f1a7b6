"""Predicting a cohort of NIfTI volumes into one output folder: volume by volume, resumable, on one or many workers.

Each volume's outputs (``CASE.nii.gz``, with ``overlays`` ``CASE_overlay.png``) are published into the output
folder as soon as that volume is done, file by file through temporaries (:func:`cmrseg.io.outputs.publish`), with a
record of the volume beside them (``.cmrseg-volumes/CASE.json``: what it was predicted from, the checksums of its
files, and what ``cases.csv`` and ``indices.csv`` need: its patient, phase, spacing, QC signals and structure
counts). ``cases.csv`` and ``indices.csv`` are assembled from the records, in the cases' order, once every volume
is done. So a Ctrl-C (or a crash) leaves only whole outputs of finished volumes, and the same command run again
skips every volume whose record says it was predicted from the same input file by the same run with the same
settings and whose files are the ones cmrseg wrote (listed in the folder's marker, same checksums).

The volumes run in this process, in ``workers`` local processes (the cores split between them) or on a Ray
cluster (:mod:`cmrseg.workers`, as ``cv`` and ``sweep`` train); each worker loads the model once. Workers write
into a temporary folder beside the output, and this process publishes what they return, so the outputs are the
same, byte for byte, whoever predicted them.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmrseg import runs
from cmrseg.data.label_volumes import MANIFEST_FILE
from cmrseg.data.readers import Volume, VolumeCase, list_cases, load_volume
from cmrseg.data.spacing import spacing_text
from cmrseg.inference.settings import PredictSettings
from cmrseg.qc.reference import Reference

INDICES_FILE = "indices.csv"
RECORDS_DIR = ".cmrseg-volumes"
"""Folder of the per-volume records inside a predict output (module doc)."""
RECORD_FORMAT = 1


@dataclass(frozen=True)
class CaseRecord:
    """What one predicted volume leaves for the tables and for a rerun (module doc); ``files`` maps each output's
    name to its SHA-256, ``job`` is the digest of the run, settings and input it was predicted from."""

    case: str
    patient: str
    phase: str | None
    group: str
    spacing: tuple[float, float, float] | None
    signals: dict[str, Any]
    counts: dict[str, int]
    shape: tuple[int, ...]
    files: dict[str, str]
    job: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaseRecord:
        """A record read back; JSON's nulls are the signals' NaNs again (:func:`cmrseg.io.atomic.json_text`)."""
        spacing = data["spacing"]
        return cls(str(data["case"]), str(data["patient"]), data["phase"], str(data["group"]),
                   None if spacing is None else tuple(float(s) for s in spacing),  # type: ignore[arg-type]
                   {key: math.nan if value is None else value for key, value in data["signals"].items()},
                   {str(k): int(v) for k, v in data["counts"].items()}, tuple(int(n) for n in data["shape"]),
                   {str(k): str(v) for k, v in data["files"].items()}, str(data["job"]))

    def phase_label(self) -> Any:
        """The :class:`cmrseg.metrics.clinical.PhaseLabel` of the predicted labels (for ``indices.csv`` and QC)."""
        from cmrseg.metrics.clinical import PhaseLabel

        return PhaseLabel(self.patient, self.phase, self.case, dict(self.counts), self.spacing, self.group, self.shape)


@dataclass
class CohortResult:
    """The label volumes of the folder (in the cases' order), how many volumes were predicted now and how many
    were skipped as already done."""

    written: list[Path]
    predicted: int
    skipped: int


def volume_outputs(case: str, overlays: bool) -> list[str]:
    """The files one volume publishes: its labels, overlay and record."""
    return [f"{case}.nii.gz", *([f"{case}_overlay.png"] if overlays else []), record_name(case)]


def record_name(case: str) -> str:
    return f"{RECORDS_DIR}/{case}.json"


def planned_outputs(cases: Sequence[VolumeCase], overlays: bool, indices: bool) -> list[str]:
    """The files :func:`predict_cohort` writes for ``cases`` (checked against foreign files first)."""
    names = [name for case in cases for name in volume_outputs(case.case, overlays)] + [MANIFEST_FILE]
    return names + ([INDICES_FILE] if indices else [])


def _manifest(records: Sequence[CaseRecord], qc: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """``cases.csv``: one row per volume, with its quality control (``qc_dice``, ``qc_flag``, ``qc_reasons`` and
    each structure's ``qc_dice_*``, see :mod:`cmrseg.qc`) when ``qc`` gives it by case."""
    from cmrseg.qc.assess import CASE_COLUMNS, case_cells

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case", "patient", "phase", "group", "spacing_mm", *(CASE_COLUMNS if qc is not None else ())])
    for v in records:
        checks = [] if qc is None else case_cells(qc[v.case])
        writer.writerow([v.case, v.patient, v.phase or "", v.group, "" if v.spacing is None else spacing_text(v.spacing),
                         *checks])
    return buffer.getvalue()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> list[Any]:
    """Where a file is, its size and modification time: changed by any rewrite of it."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class _Worker:
    """What a worker loads once and predicts every volume with."""

    predictor: Any
    settings: PredictSettings
    target: tuple[float, ...] | None
    reference: Reference | None = None  # the QC reference model (--qc-reference), if any
    cache: dict[str, Volume] = dataclasses.field(default_factory=dict)

    def read(self, case: VolumeCase) -> Volume:
        """Each volume once, though a model that reads the other phase needs it for its partner too (cases come in
        order, so the last two are kept)."""
        if case.case not in self.cache:
            while len(self.cache) >= 2:
                self.cache.pop(next(iter(self.cache)))
            self.cache[case.case] = load_volume(case, with_label=False)
        return self.cache[case.case]


def _load_worker(run_dir: str, settings: PredictSettings | None, reference: str | Path | None = None) -> _Worker:
    """The run loaded as a predictor that keeps its QC agreement counts, its resolved settings, its spacing and the
    QC reference model ``reference`` (if any)."""
    from cmrseg.inference.loading import load_run
    from cmrseg.inference.volume_prediction import training_spacing
    from cmrseg.qc.predict import enable_agreement
    from cmrseg.qc.reference import load_reference

    predictor, resolved = load_run(run_dir, settings)
    enable_agreement(predictor)
    return _Worker(predictor, resolved, training_spacing(run_dir), load_reference(reference))


def predict_case(worker: _Worker, case: VolumeCase, partner: VolumeCase | None, stage: Path, overlays: bool,
                 job: str) -> CaseRecord:
    """Predict one volume into ``stage`` (its labels and overlay; the record is the caller's) and return its record."""
    from PIL import Image

    from cmrseg.metrics.clinical import PhaseLabel
    from cmrseg.data.readers.nifti import write_label_volume
    from cmrseg.inference.volume_prediction import montage, volume_mask, volume_probabilities
    from cmrseg.qc.predict import last_signals

    volume = worker.read(case)
    probs = volume_probabilities(worker.predictor, volume, worker.target,
                                 worker.read(partner) if partner is not None else None)
    mask = volume_mask(probs, bool(worker.settings.postprocess), worker.settings.class_weights)
    signals = last_signals(worker.predictor, probs, mask, volume, worker.reference)
    stage.mkdir(parents=True, exist_ok=True)
    write_label_volume(mask, volume, stage / f"{case.case}.nii.gz")
    if overlays:
        Image.fromarray(montage(volume, mask)).save(stage / f"{case.case}_overlay.png")
    label = PhaseLabel.from_volume(volume, mask)
    files = {name: file_digest(stage / name) for name in volume_outputs(case.case, overlays)[:-1]}
    record = CaseRecord(case.case, volume.patient, volume.phase, volume.group, volume.spacing, signals, label.counts,
                        label.shape or tuple(mask.shape), files, job)
    return CaseRecord.from_json(json.loads(_json(record.to_json())))  # as a rerun reads it back


def _json(data: Any) -> str:
    from cmrseg.io.atomic import json_text

    return json_text(data)


_LOADED: list[_Worker] = []
"""The model a worker process loaded at its start (:func:`_setup_process`)."""


def _setup_process(run_dir: str, settings: PredictSettings | None, reference: str | Path | None = None) -> None:
    _LOADED[:] = [_load_worker(run_dir, settings, reference)]


def _predict_in_worker(case: VolumeCase, partner: VolumeCase | None, stage: str, overlays: bool, job: str) -> CaseRecord:
    return predict_case(_LOADED[0], case, partner, Path(stage), overlays, job)


def _finished(out: Path, cases: Sequence[VolumeCase], jobs: Mapping[str, str], overlays: bool) -> dict[str, CaseRecord]:
    """The cases whose outputs in ``out`` are complete and current (module doc), by case."""
    from cmrseg.io.outputs import read_marker

    marker = read_marker(out) or {}
    owned = set(marker.get("files", [])) if marker.get("command") == "predict" else set()
    done = {}
    for case in cases:
        names = volume_outputs(case.case, overlays)
        if not set(names) <= owned:
            continue
        try:
            record = CaseRecord.from_json(json.loads((out / record_name(case.case)).read_text()))
            same = (record.job == jobs[case.case] and record.case == case.case and set(record.files) == set(names[:-1])
                    and all(file_digest(out / name) == digest for name, digest in record.files.items()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if same:
            done[case.case] = record
    return done


def _model_files(run_dir: str | Path, predictor: Any) -> list[str]:
    """The checksums of a model's file or zip, weights and config: a retrained run or another export differs, a
    copied one does not."""
    files = [Path(run_dir), Path(str(getattr(predictor, "source", ""))), Path(run_dir) / runs.CONFIG_FILE]
    return [file_digest(path) for path in files if path.is_file()]


def _run_identity(run_dir: str | Path, predictor: Any, resolved: PredictSettings, target: Any, overlays: bool,
                  reference: Any = None) -> Any:
    """What a volume's outputs depend on besides its input: the run (:func:`_model_files`), the resolved settings,
    the spacing it predicts at, whether overlays are drawn, and the QC reference model (its files; its signals are in
    the record)."""
    identity = {"run": _model_files(run_dir, predictor), "settings": dataclasses.asdict(resolved), "target": target,
                "overlays": overlays, "format": RECORD_FORMAT}
    if reference is not None:
        identity["reference"] = _model_files(reference.path, reference.predictor)
    return identity


def predict_cohort(
    run_dir: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    overlays: bool = False,
    settings: PredictSettings | None = None,
    indices: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    qc_threshold: float | None = None,
    qc_reference: str | Path | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    log: Callable[[str], None] = print,
) -> CohortResult:
    """Write ``CASE.nii.gz`` (uint8 labels, the input's geometry) per input volume, ``cases.csv``, and with
    ``overlays`` ``CASE_overlay.png`` (all slices side by side); with ``indices`` also ``indices.csv``.

    Volumes are published one by one and a rerun skips the finished ones, saying how many in one line through
    ``log`` (module doc); they run in ``workers`` local processes, or with ``ray_address`` on ``workers`` Ray
    actors (``local``: a throwaway cluster on this machine; the input, output and run must be on storage every
    node sees). ``cases.csv`` and ``indices.csv`` carry each volume's and patient's quality control
    (:mod:`cmrseg.qc`, docs/qc.md): ``qc_threshold`` is the predicted Dice below which a volume is flagged
    (default :data:`cmrseg.qc.DEFAULT_THRESHOLD`); the run's calibrated QC model is used when it has one;
    ``qc_reference`` (a run, export zip or shipped model name) predicts every volume a second time and adds its
    agreement to the quality control (:mod:`cmrseg.qc.reference`).

    ``out_dir`` follows the rules of :func:`cmrseg.inference.predict_folder` (new, empty, an earlier predict
    output or ``overwrite``; outside the input)."""
    from cmrseg.data.readers.nifti import check_header
    from cmrseg.inference.loading import load_run
    from cmrseg.inference.volume_prediction import partners_for, require_conditions, training_spacing, warn_spacing_ignored
    from cmrseg.io.locks import run_lock
    from cmrseg.io.outputs import check_output_dir, prune, remove_if_unused
    from cmrseg.qc import check_threshold
    from cmrseg.qc.predict import qc_model
    from cmrseg.qc.reference import load_reference
    from cmrseg.workers import check_engine

    check_engine(workers, ray_address)
    threshold = check_threshold(qc_threshold)
    cases = list_cases(images_dir, require_labels=False)
    spacings = {case.image_path: check_header(case.image_path) for case in cases
                if case.image_path.name.endswith((".nii", ".nii.gz"))}
    out = check_output_dir(out_dir, "predict", overwrite=overwrite, inputs=[images_dir, *runs.run_inputs(run_dir)],
                           files=planned_outputs(cases, overlays, indices))
    predictor, resolved = load_run(run_dir, settings)
    reference = load_reference(qc_reference)
    require_conditions(predictor, [(case.phase, case.image_path) for case in cases])
    if reference is not None:
        reference.require([(case.phase, case.image_path) for case in cases])
    partners: dict[str, VolumeCase] = partners_for(predictor, cases, lambda case: case.image_path)
    target = training_spacing(run_dir)
    if target is None:
        warn_spacing_ignored(run_dir, spacings)
    identity = _run_identity(run_dir, predictor, resolved, target, overlays, reference)
    jobs = {case.case: _digest([identity, _stamp(case.image_path),
                                _stamp(partners[case.case].image_path) if case.case in partners else None])
            for case in cases}
    in_process = _Worker(predictor, resolved, target, reference) if workers == 1 and ray_address is None else None
    del predictor
    model, fresh = qc_model(run_dir, reference is not None), not out.exists()
    try:
        with run_lock(out, "predict"):
            done = _finished(out, cases, jobs, overlays)
            prune(out, "predict", [name for case in done for name in volume_outputs(case, overlays)])
            if done:
                log(f"{out}: {len(done)} of {len(cases)} volumes already predicted from the same input with the same "
                    "run and settings; skipped")
            todo = [case for case in cases if case.case not in done]
            try:
                _predict_all(todo, partners, out, overlays, jobs, done, len(cases), progress, in_process,
                             (str(run_dir), settings, qc_reference), workers, ray_address)
            except KeyboardInterrupt:
                log(f"interrupted: {len(done)} of {len(cases)} volumes are predicted in {out}; the same command "
                    "predicts the rest")
                raise
            _write_tables(out, [done[case.case] for case in cases], model, threshold, indices)
    except BaseException:
        if fresh:
            remove_if_unused(out, "predict")
        raise
    return CohortResult([out / f"{case.case}.nii.gz" for case in cases], len(todo), len(cases) - len(todo))


def _predict_all(todo: Sequence[VolumeCase], partners: Mapping[str, VolumeCase], out: Path, overlays: bool,
                 jobs: Mapping[str, str], done: dict[str, CaseRecord], total: int, progress: bool,
                 in_process: _Worker | None, load_args: tuple[str, PredictSettings | None, str | Path | None], workers: int,
                 ray_address: str | None) -> None:
    """Predict ``todo`` on the engine, publishing each volume (and adding its record to ``done``) as it finishes."""
    from tqdm.auto import tqdm

    from cmrseg.io.atomic import write_text_atomic
    from cmrseg.io.outputs import atomic_dir, publish

    with atomic_dir(out, "predict", keep_owned=True) as tmp:
        args = {case.case: (case, partners.get(case.case), str(tmp / "volumes" / case.case), overlays, jobs[case.case])
                for case in todo}
        bar = tqdm(total=total, initial=total - len(todo), desc="predict", unit="volume", disable=not progress,
                   dynamic_ncols=True)
        with bar:
            for key, record in _engine(args, in_process, load_args, workers, ray_address):
                stage = Path(args[key][2])
                write_text_atomic(stage / record_name(record.case), _json(record.to_json()) + "\n")
                publish(stage, out, "predict", keep_owned=True)
                done[record.case] = record
                bar.set_postfix_str(record.case, refresh=False)
                bar.update()


def _engine(args: Mapping[Hashable, Sequence[Any]], in_process: _Worker | None,
            load_args: tuple[str, PredictSettings | None, str | Path | None], workers: int,
            ray_address: str | None) -> Iterator[tuple[Hashable, CaseRecord]]:
    """``(case, record)`` of each job as it finishes: in this process with the loaded ``in_process`` model, else in
    worker processes or Ray actors that load the run once each."""
    from cmrseg.workers import run_in_processes, run_on_ray_actors

    if not args:
        return iter(())
    if ray_address is not None:
        return run_on_ray_actors(_predict_in_worker, args, ray_address, workers, _setup_process, load_args)
    if in_process is not None:
        return ((key, predict_case(in_process, *job[:2], Path(job[2]), *job[3:])) for key, job in args.items())
    return run_in_processes(_predict_in_worker, args, min(workers, len(args)), _setup_process, load_args)


def _write_tables(out: Path, records: Sequence[CaseRecord], qc_model: Any, threshold: float, indices: bool) -> None:
    """``cases.csv`` (and ``indices.csv``) of every volume's record, with the quality control, in ``out``; a volume
    whose labels are no heart in short axis gets a one-line warning (:func:`cmrseg.qc.assess.anatomy_warning`)."""
    from cmrseg.metrics.clinical import indices_table, with_patient_qc, write_indices_csv
    from cmrseg.qc import assess
    from cmrseg.qc.assess import anatomy_warning
    from cmrseg.io.atomic import write_text_atomic
    from cmrseg.io.outputs import atomic_dir

    phases = [record.phase_label() for record in records]
    checked = assess({record.case: record.signals for record in records}, phases, qc_model, threshold)
    for line in filter(None, (anatomy_warning(record.case, record.signals) for record in records)):
        warnings.warn(line, stacklevel=3)
    with atomic_dir(out, "predict", keep_owned=True) as tmp:
        write_text_atomic(tmp / MANIFEST_FILE, _manifest(records, checked.cases))
        if indices:
            write_indices_csv(with_patient_qc(indices_table(phases), checked), tmp / INDICES_FILE)
