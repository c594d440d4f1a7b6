"""Reading label volumes for clinical indices: a labeled dataset's ``_gt`` labels, or a folder of predicted
``CASE.nii.gz`` with the ``cases.csv`` manifest that ``cmrseg predict`` writes beside them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmrseg.data.readers.layouts import INFO_FILE, LABEL_SUFFIX, list_cases, missing_label, patient_and_phase, read_info
from cmrseg.data.readers.nifti import check_labels, check_same_pixdim, header_spacing, load_nifti, nifti_header
from cmrseg.errors import CmrsegError

MANIFEST_FILE = "cases.csv"
"""Written by ``cmrseg predict`` beside predicted volumes: case, patient, phase, group and spacing."""


@dataclass
class LabelVolume:
    """A label volume with its patient, phase and spacing: what clinical indices are computed from."""

    case: str
    patient: str
    phase: str | None
    label: np.ndarray
    spacing: tuple[float, float, float] | None
    group: str = ""


def _read_manifest(path: Path) -> dict[str, dict[str, str]]:
    import csv

    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            rows, fields = list(reader), set(reader.fieldnames or ())
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise CmrsegError(f"{path}: cannot read ({type(err).__name__})") from None
    columns = {"case", "patient", "phase"}
    if not columns <= fields:
        raise CmrsegError(f"{path}: expected the columns {', '.join(sorted(columns))} that cmrseg predict writes")
    return {row["case"]: row for row in rows}


def _info_for(patient: str, info_dir: Path | None) -> dict[str, str]:
    if info_dir is None:
        return {}
    for candidate in (info_dir / patient / INFO_FILE, info_dir / INFO_FILE):
        if candidate.is_file():
            return read_info(candidate)
    return {}


def _prediction_label(path: Path, stem: str, manifest: dict[str, dict[str, str]], info_dir: Path | None) -> LabelVolume:
    image, data = load_nifti(path)
    label = check_labels(path, data)
    row = manifest.get(stem)
    if row is not None:
        patient, phase, group = row["patient"], row["phase"] or None, row.get("group", "")
    else:
        patient = patient_and_phase(stem, {})[0]
        info = _info_for(patient, info_dir)
        patient, phase = patient_and_phase(stem, info)
        group = info.get("Group", "")
    return LabelVolume(stem, patient, phase, label, header_spacing(image.header, path), group)


def load_label_folder(directory: str | Path, info_dir: str | Path | None = None) -> list[LabelVolume]:
    """Label volumes for clinical indices: the ``_gt`` labels of a labeled dataset, or a folder of predicted
    ``CASE.nii.gz`` (phases from cmrseg's ``cases.csv`` beside them, else from ``Info.cfg`` files in ``info_dir``)."""
    directory = Path(directory)
    cases = list_cases(directory, require_labels=False)
    if any(case.label_path is not None for case in cases):
        labeled = []
        for case in cases:
            if case.label_path is None:
                raise missing_label(case.image_path, case.image_path.parent / (case.case + LABEL_SUFFIX))
            image, data = load_nifti(case.label_path)
            check_same_pixdim(case, nifti_header(case.image_path), image.header)
            labeled.append(LabelVolume(case.case, case.patient, case.phase, check_labels(case.label_path, data),
                                       header_spacing(image.header, case.label_path), case.info.get("Group", "")))
        return labeled
    manifest_path = directory / MANIFEST_FILE
    manifest = _read_manifest(manifest_path) if manifest_path.is_file() else {}
    info = Path(info_dir) if info_dir is not None else None
    return [_prediction_label(case.image_path, case.case, manifest, info) for case in cases]
