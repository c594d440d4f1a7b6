"""The three NIfTI dataset layouts: which files are one case, its label, its patient and phase.

Three layouts are recognised (the first that matches wins):

``nnU-Net``  ``DIR/imagesTr/CASE_0000.nii.gz`` + ``DIR/labelsTr/CASE.nii.gz`` (or ``imagesTs``; ``DIR`` may
             also be the ``imagesTr`` folder itself). Only single-channel (``_0000``) cases are supported.
``ACDC``     ``DIR/patientXXX/patientXXX_frameNN.nii.gz`` + ``..._gt.nii.gz`` and ``Info.cfg`` naming the ED
             and ES frames; the cine ``_4d`` file is not read (the ED/ES frame files are).
``flat``     ``DIR/CASE.nii.gz`` + ``DIR/CASE_gt.nii.gz``; a case named ``X_ED``/``X_ES`` (or ``X_frameNN``
             with an ``Info.cfg`` beside it) is phase ED/ES of patient ``X``.

Nothing here reads voxels: :mod:`cmrseg.data.readers.nifti` does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from cmrseg.data.readers.base import VolumeCase, natural_key, same_id
from cmrseg.errors import CmrsegError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
LABEL_SUFFIX = "_gt"
INFO_FILE = "Info.cfg"
NNUNET_CHANNEL = "_0000"
PHASES = ("ED", "ES")
_FRAME_RE = re.compile(r"(?P<patient>.+)_frame(?P<frame>\d+)$")
_PHASE_RE = re.compile(r"(?P<patient>.+)_(?P<phase>ED|ES)$", re.IGNORECASE)


def nifti_stem(path: Path) -> str | None:
    """``case.nii.gz`` -> ``case``; None for a file that is not NIfTI."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix) and not path.name.startswith("."):
            return path.name[: -len(suffix)]
    return None


def nifti_files(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        stem = nifti_stem(path)
        if stem is not None and path.is_file():
            if stem in found:
                raise same_id(found[stem], path, stem)
            found[stem] = path
    return found


def check_unique_cases(cases: Sequence[VolumeCase]) -> None:
    """Refuse two cases with one id (compared ignoring case, as output files on some disks are) or, with a
    known phase, two volumes of one patient's phase (``X_ED`` beside ``X_ed``), naming both files."""
    seen: dict[object, VolumeCase] = {}
    for case in cases:
        for key in (case.case.casefold(), (case.patient, case.phase) if case.phase else None):
            if key is not None and key in seen:
                raise same_id(seen[key].image_path, case.image_path, case.case)
            if key is not None:
                seen[key] = case


def _nnunet_dirs(directory: Path) -> tuple[Path, Path | None] | None:
    """(images folder, labels folder or None) of an nnU-Net dataset, or None when it is not one."""
    if directory.name in ("imagesTr", "imagesTs"):
        labels = directory.parent / directory.name.replace("images", "labels")
        return directory, labels if labels.is_dir() else None
    for name in ("imagesTr", "imagesTs"):
        if (directory / name).is_dir():
            labels = directory / name.replace("images", "labels")
            return directory / name, labels if labels.is_dir() else None
    return None


def _acdc_patient_dirs(directory: Path) -> list[Path]:
    return [p for p in sorted(directory.iterdir()) if p.is_dir() and not p.name.startswith(".")
            and not p.name.startswith(("imagesT", "labelsT"))
            and ((p / INFO_FILE).is_file() or any(nifti_stem(f) for f in p.iterdir()))]


def _layouts(directory: Path) -> list[str]:
    """The layouts present in ``directory`` (nnU-Net, flat, ACDC); more than one is refused by :func:`list_cases`."""
    if directory.name in ("imagesTr", "imagesTs"):
        return ["nnU-Net"]
    return [name for name, present in (("nnU-Net", _nnunet_dirs(directory) is not None),
                                        ("flat", bool(nifti_files(directory))),
                                        ("ACDC", any(nifti_files(p) for p in _acdc_patient_dirs(directory))))
             if present]


def is_volume_dataset(directory: str | Path) -> bool:
    """Whether ``directory`` holds NIfTI volumes in one of the three layouts, or is one NIfTI file (a one-volume
    dataset); PNG folders and files answer False."""
    directory = Path(directory)
    if directory.is_file():
        return nifti_stem(directory) is not None
    if not directory.is_dir() or (directory / "image").is_dir():
        return False
    if _nnunet_dirs(directory) is not None or nifti_files(directory):
        return True
    return any(nifti_files(p) for p in _acdc_patient_dirs(directory))


def read_info(path: Path) -> dict[str, str]:
    """ACDC ``Info.cfg`` (``Key: value`` lines) as a dict; ED and ES frame numbers are required."""
    info: dict[str, str] = {}
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise CmrsegError(f"{path}: cannot read ({type(err).__name__})") from None
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    for phase in PHASES:
        if not re.fullmatch(r"[0-9]{1,6}", info.get(phase, "")):
            raise CmrsegError(f"{path}: no {phase} frame number (expected a line '{phase}: N' with N a whole number "
                              f"below 1000000, got {info.get(phase, '')[:20]!r})")
    if int(info["ED"]) == int(info["ES"]):
        raise CmrsegError(f"{path}: ED and ES are both frame {int(info['ED'])}; expected two different frames")
    return info


def _phase_of_frame(frame: int, info: dict[str, str]) -> str | None:
    for phase in PHASES:
        if info and int(info[phase]) == frame:
            return phase
    return None


def patient_and_phase(stem: str, info: dict[str, str]) -> tuple[str, str | None]:
    if match := _PHASE_RE.fullmatch(stem):
        return match["patient"], match["phase"].upper()
    if match := _FRAME_RE.fullmatch(stem):
        return match["patient"], _phase_of_frame(int(match["frame"]), info)
    return stem, None


def missing_label(image: Path, expected: Path) -> CmrsegError:
    return CmrsegError(f"{image}: no label volume found (expected {expected}.nii.gz)")


def _cases_paired(directory: Path, require_labels: bool, frames_only: bool, only: str | None = None
                  ) -> list[VolumeCase]:
    """``CASE.nii.gz`` + ``CASE_gt.nii.gz`` of one folder, phases from an ``Info.cfg`` beside them; with
    ``frames_only`` (an ACDC patient folder) only the ``patientXXX_frameNN`` files count, with ``only`` only that case."""
    info = read_info(directory / INFO_FILE) if (directory / INFO_FILE).is_file() else {}
    files = nifti_files(directory)
    cases = []
    for stem, path in files.items():
        if stem.endswith(LABEL_SUFFIX) or (frames_only and _FRAME_RE.fullmatch(stem) is None) or only not in (None, stem):
            continue
        label = files.get(stem + LABEL_SUFFIX)
        if label is None and require_labels:
            raise missing_label(path, directory / (stem + LABEL_SUFFIX))
        patient, phase = patient_and_phase(stem, info)
        cases.append(VolumeCase(stem, patient, path, label, phase, info))
    return cases


def _cases_nnunet(images: Path, labels: Path | None, require_labels: bool) -> list[VolumeCase]:
    cases = []
    for stem, path in nifti_files(images).items():
        if not stem.endswith(NNUNET_CHANNEL):
            raise CmrsegError(f"{path}: only single-channel nnU-Net cases (CASE{NNUNET_CHANNEL}.nii.gz) are supported")
        case = stem[: -len(NNUNET_CHANNEL)]
        label = None
        if labels is not None:
            label = next((labels / f"{case}{s}" for s in NIFTI_SUFFIXES if (labels / f"{case}{s}").is_file()), None)
        if label is None and require_labels:
            raise missing_label(path, (labels or images.parent / "labelsTr") / case)
        patient, phase = patient_and_phase(case, {})
        cases.append(VolumeCase(case, patient, path, label, phase))
    return cases


def list_cases(directory: str | Path, require_labels: bool = True) -> list[VolumeCase]:
    """Every image volume of a dataset folder in natural order, paired with its label file; a NIfTI file is a
    one-volume dataset (its label ``CASE_gt`` and an ``Info.cfg`` beside it count as in a flat folder)."""
    directory = Path(directory)
    if directory.is_file() and nifti_stem(directory) is not None:
        stem = nifti_stem(directory)
        if stem.endswith(LABEL_SUFFIX):  # type: ignore[union-attr]
            raise CmrsegError(f"{directory}: a label volume ({LABEL_SUFFIX}); give the image volume it labels")
        return _cases_paired(directory.parent, require_labels, frames_only=False, only=stem)
    if not directory.is_dir():
        raise CmrsegError(f"{directory}: folder not found")
    layouts = _layouts(directory)
    if len(layouts) > 1:
        raise CmrsegError(f"{directory}: mixes the {' and '.join(layouts)} layouts; expected one (move the stray "
                          "volumes or folders away)")
    nnunet = _nnunet_dirs(directory)
    if nnunet is not None:
        cases = _cases_nnunet(*nnunet, require_labels)
    elif layouts == ["flat"]:
        cases = _cases_paired(directory, require_labels, frames_only=False)
    else:
        cases = [c for p in _acdc_patient_dirs(directory) for c in _cases_paired(p, require_labels, frames_only=True)]
    if not cases:
        raise CmrsegError(f"{directory}: no NIfTI volumes found (expected ACDC patient folders, CASE.nii.gz or imagesTr/)")
    check_unique_cases(cases)
    return sorted(cases, key=lambda c: natural_key(c.case))
