"""Short-axis NIfTI volumes: ACDC, flat and nnU-Net dataset layouts, read with nibabel.

Three layouts are recognised (the first that matches wins):

``nnU-Net``  ``DIR/imagesTr/CASE_0000.nii.gz`` + ``DIR/labelsTr/CASE.nii.gz`` (or ``imagesTs``; ``DIR`` may
             also be the ``imagesTr`` folder itself). Only single-channel (``_0000``) cases are supported.
``ACDC``     ``DIR/patientXXX/patientXXX_frameNN.nii.gz`` + ``..._gt.nii.gz`` and ``Info.cfg`` naming the ED
             and ES frames; the cine ``_4d`` file is not read (the ED/ES frame files are).
``flat``     ``DIR/CASE.nii.gz`` + ``DIR/CASE_gt.nii.gz``; a case named ``X_ED``/``X_ES`` (or ``X_frameNN``
             with an ``Info.cfg`` beside it) is phase ED/ES of patient ``X``.

Slice ``z`` of a volume as an array, ``volume[:, :, z]``, is a 2D slice in the orientation of the PNG
datasets (rows, columns), so PNG-trained models and volume-trained models see the same pictures.
Non-uint8 intensities are mapped to 0-255 per volume (0.5th to 99.5th percentile), since the slice
pipeline works on 8-bit images; uint8 volumes are taken as they are (byte-identical to their PNGs).

Spacing is *known* when the header names a spatial unit (``xyzt_units``): it is then converted to mm.
A header whose unit is "unknown" (as in acdc96, pixdim 1) gives ``spacing None``: metrics and volumes are
then in voxels, and the tables say so.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmrseg.constants import NUM_CLASSES
from cmrseg.data.spacing import check_spacing
from cmrseg.errors import CmrsegError

if TYPE_CHECKING:
    from cmrseg.data.reader import Sample

NIFTI_SUFFIXES = (".nii.gz", ".nii")
LABEL_SUFFIX = "_gt"
INFO_FILE = "Info.cfg"
NNUNET_CHANNEL = "_0000"
PHASES = ("ED", "ES")
MANIFEST_FILE = "cases.csv"
"""Written by ``cmrseg predict`` beside predicted volumes: case, patient, phase, group and spacing."""
_UNIT_TO_MM = {"mm": 1.0, "meter": 1000.0, "micron": 0.001}
_FRAME_RE = re.compile(r"(?P<patient>.+)_frame(?P<frame>\d+)$")
_PHASE_RE = re.compile(r"(?P<patient>.+)_(?P<phase>ED|ES)$", re.IGNORECASE)


@dataclass
class VolumeCase:
    """One image volume on disk before it is read: its case id, patient, phase and files."""

    case: str
    patient: str
    image_path: Path
    label_path: Path | None = None
    phase: str | None = None
    info: dict[str, str] = field(default_factory=dict)


@dataclass
class Volume:
    """A read volume: ``image`` uint8 and ``label`` uint8 (or None), both H x W x Z, with the input's geometry."""

    case: str
    patient: str
    phase: str | None
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    header: Any
    spacing: tuple[float, float, float] | None
    path: Path
    info: dict[str, str] = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        return int(self.image.shape[2])

    @property
    def group(self) -> str:
        """The ACDC diagnosis group from ``Info.cfg`` (empty when unknown)."""
        return self.info.get("Group", "")

    def slice_id(self, z: int) -> str:
        return f"{self.case}_z{z:02d}"

    def conditions(self, names: Sequence[str], z: int) -> np.ndarray:
        """Slice ``z``'s values of ``model_info.conditions`` (:mod:`cmrseg.data.conditions`); one-line error if unknown."""
        from cmrseg.data.conditions import condition_values

        return condition_values(names, self.phase, z, self.n_slices, str(self.path))


def spacing_text(spacing: Sequence[float] | None) -> str:
    """``1.5x1.5x8`` (mm), or ``unknown``, as tables and manifests print a voxel spacing."""
    return "unknown" if spacing is None else "x".join(f"{s:g}" for s in spacing)


def nifti_stem(path: Path) -> str | None:
    """``case.nii.gz`` -> ``case``; None for a file that is not NIfTI."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix) and not path.name.startswith("."):
            return path.name[: -len(suffix)]
    return None


def _nifti_files(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        stem = nifti_stem(path)
        if stem is not None and path.is_file():
            if stem in found:
                raise _same_id(found[stem], path, stem)
            found[stem] = path
    return found


def _same_id(first: Path, second: Path, case: str) -> CmrsegError:
    """The case-id rule of every layout (and of PNG folders): two files that give one case are an error."""
    return CmrsegError(f"{first} and {second}: both give the case id '{case}'; rename or remove one")


def check_unique_cases(cases: Sequence[VolumeCase]) -> None:
    """Refuse two cases with one id (compared ignoring case, as output files on some disks are) or, with a
    known phase, two volumes of one patient's phase (``X_ED`` beside ``X_ed``), naming both files."""
    seen: dict[object, VolumeCase] = {}
    for case in cases:
        for key in (case.case.casefold(), (case.patient, case.phase) if case.phase else None):
            if key is not None and key in seen:
                raise _same_id(seen[key].image_path, case.image_path, case.case)
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
                                        ("flat", bool(_nifti_files(directory))),
                                        ("ACDC", any(_nifti_files(p) for p in _acdc_patient_dirs(directory))))
             if present]


def is_volume_dataset(directory: str | Path) -> bool:
    """Whether ``directory`` holds NIfTI volumes in one of the three layouts, or is one NIfTI file (a one-volume
    dataset); PNG folders and files answer False."""
    directory = Path(directory)
    if directory.is_file():
        return nifti_stem(directory) is not None
    if not directory.is_dir() or (directory / "image").is_dir():
        return False
    if _nnunet_dirs(directory) is not None or _nifti_files(directory):
        return True
    return any(_nifti_files(p) for p in _acdc_patient_dirs(directory))


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


def _patient_and_phase(stem: str, info: dict[str, str]) -> tuple[str, str | None]:
    if match := _PHASE_RE.fullmatch(stem):
        return match["patient"], match["phase"].upper()
    if match := _FRAME_RE.fullmatch(stem):
        return match["patient"], _phase_of_frame(int(match["frame"]), info)
    return stem, None


def _missing_label(image: Path, expected: Path) -> CmrsegError:
    return CmrsegError(f"{image}: no label volume found (expected {expected}.nii.gz)")


def _cases_paired(directory: Path, require_labels: bool, frames_only: bool, only: str | None = None
                  ) -> list[VolumeCase]:
    """``CASE.nii.gz`` + ``CASE_gt.nii.gz`` of one folder, phases from an ``Info.cfg`` beside them; with
    ``frames_only`` (an ACDC patient folder) only the ``patientXXX_frameNN`` files count, with ``only`` only that case."""
    info = read_info(directory / INFO_FILE) if (directory / INFO_FILE).is_file() else {}
    files = _nifti_files(directory)
    cases = []
    for stem, path in files.items():
        if stem.endswith(LABEL_SUFFIX) or (frames_only and _FRAME_RE.fullmatch(stem) is None) or only not in (None, stem):
            continue
        label = files.get(stem + LABEL_SUFFIX)
        if label is None and require_labels:
            raise _missing_label(path, directory / (stem + LABEL_SUFFIX))
        patient, phase = _patient_and_phase(stem, info)
        cases.append(VolumeCase(stem, patient, path, label, phase, info))
    return cases


def _cases_nnunet(images: Path, labels: Path | None, require_labels: bool) -> list[VolumeCase]:
    cases = []
    for stem, path in _nifti_files(images).items():
        if not stem.endswith(NNUNET_CHANNEL):
            raise CmrsegError(f"{path}: only single-channel nnU-Net cases (CASE{NNUNET_CHANNEL}.nii.gz) are supported")
        case = stem[: -len(NNUNET_CHANNEL)]
        label = None
        if labels is not None:
            label = next((labels / f"{case}{s}" for s in NIFTI_SUFFIXES if (labels / f"{case}{s}").is_file()), None)
        if label is None and require_labels:
            raise _missing_label(path, (labels or images.parent / "labelsTr") / case)
        patient, phase = _patient_and_phase(case, {})
        cases.append(VolumeCase(case, patient, path, label, phase))
    return cases


def list_cases(directory: str | Path, require_labels: bool = True) -> list[VolumeCase]:
    """Every image volume of a dataset folder in natural order, paired with its label file; a NIfTI file is a
    one-volume dataset (its label ``CASE_gt`` and an ``Info.cfg`` beside it count as in a flat folder)."""
    from cmrseg.data.reader import natural_key

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


def _header(path: Path) -> Any:
    """The NIfTI header of ``path`` without reading its voxels."""
    return _load_nifti(path, voxels=False)[0].header


def _load_nifti(path: Path, voxels: bool = True) -> Any:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj) if voxels else np.empty((0, 0, 0))
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as err:
        raise CmrsegError(f"{path}: corrupt or unreadable NIfTI ({type(err).__name__}: {err})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        raise CmrsegError(f"{path}: 4-D (cine) volume with {data.shape[3]} frames; cmrseg needs one 3-D volume per "
                          f"phase (for ACDC, the patientXXX_frameNN files named by Info.cfg)")
    if data.ndim != 3:
        raise CmrsegError(f"{path}: expected a 3-D volume, got {data.ndim} dimensions {data.shape}")
    return image, data


def header_spacing(header: Any, source: str | Path = "NIfTI header") -> tuple[float, float, float] | None:
    """Voxel size in mm from a NIfTI header, or None when the header does not name a spatial unit; checked
    against the sane bounds of :mod:`cmrseg.data.spacing` (one line naming ``source`` otherwise)."""
    unit = header.get_xyzt_units()[0]
    if unit not in _UNIT_TO_MM:
        return None
    zooms = [float(z) * _UNIT_TO_MM[unit] for z in header.get_zooms()[:3]]
    return check_spacing(zooms, f"{source} (header unit {unit})")


def to_uint8(data: np.ndarray) -> np.ndarray:
    """uint8 volumes as they are; others mapped from their 0.5-99.5th percentiles to 0-255."""
    if data.dtype == np.uint8:
        return np.ascontiguousarray(data)
    values = np.asarray(data, dtype=np.float64)
    low, high = np.percentile(values, [0.5, 99.5])
    scaled = (values - low) / (high - low if high > low else 1.0)
    return (scaled.clip(0.0, 1.0) * 255).round().astype(np.uint8)


def check_labels(path: Path, data: np.ndarray) -> np.ndarray:
    """Label values as uint8 class indices, or a one-line error for fractions or values outside 0..3."""
    values = np.asarray(data)
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
            raise CmrsegError(f"{path}: labels must be whole numbers 0-{NUM_CLASSES - 1}, found non-integer values")
    if values.size and (values.min() < 0 or values.max() >= NUM_CLASSES):
        bad = sorted(int(v) for v in np.unique(values) if not 0 <= v < NUM_CLASSES)
        raise CmrsegError(f"{path}: label values must be 0-{NUM_CLASSES - 1}, found {bad[:5]}")
    return values.astype(np.uint8)


def load_volume(case: VolumeCase, with_label: bool = True) -> Volume:
    """Read a case's image (and label) volume, checking that both share shape and geometry."""
    image, data = _load_nifti(case.image_path)
    if not np.issubdtype(data.dtype, np.integer) and not np.isfinite(data).all():
        raise CmrsegError(f"{case.image_path}: {np.count_nonzero(~np.isfinite(data))} voxel(s) are NaN or infinite; "
                          "expected finite intensities")
    label = None
    if with_label and case.label_path is not None:
        label_image, label_data = _load_nifti(case.label_path)
        if label_data.shape != data.shape:
            raise CmrsegError(f"{case.label_path}: label shape {label_data.shape} does not match its image {data.shape}")
        if not np.allclose(label_image.affine, image.affine, atol=1e-3):
            raise CmrsegError(f"{case.label_path}: label affine differs from its image's ({case.image_path.name})")
        check_same_pixdim(case, image.header, label_image.header)
        label = check_labels(case.label_path, label_data)
    return Volume(case.case, case.patient, case.phase, to_uint8(data), label, np.asarray(image.affine),
                  image.header.copy(), header_spacing(image.header, case.image_path), case.image_path, case.info)


def check_same_pixdim(case: VolumeCase, image_header: Any, label_header: Any) -> None:
    """Refuse a label whose voxel size (pixdim and unit) differs from its image's: volumes and indices would
    follow the wrong one."""
    zooms = [np.asarray(h.get_zooms()[:3], float) for h in (image_header, label_header)]
    units = [h.get_xyzt_units()[0] for h in (image_header, label_header)]
    if units[0] != units[1] or not np.allclose(zooms[0], zooms[1], rtol=1e-3):
        raise CmrsegError(f"{case.label_path}: voxel size {spacing_text(zooms[1])} ({units[1]}) differs from its "
                          f"image's {spacing_text(zooms[0])} ({units[0]}, {case.image_path.name})")


def load_volume_folder(directory: str | Path, require_labels: bool = True) -> list[Volume]:
    """Every volume of a dataset folder (see the module doc for the layouts), labels included when present."""
    return [load_volume(case) for case in list_cases(directory, require_labels)]


def label_volume_bytes(label: np.ndarray, like: Volume, compress: bool = True) -> bytes:
    """``label`` (H x W x Z) as uint8 NIfTI bytes with the affine and header of the input volume ``like``."""
    import gzip

    import nibabel as nib

    image_class = nib.Nifti2Image if isinstance(like.header, nib.Nifti2Header) else nib.Nifti1Image
    header = like.header.copy()
    header.set_data_dtype(np.uint8)
    image = image_class(np.ascontiguousarray(label, dtype=np.uint8), like.affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    raw = image.to_bytes()
    return gzip.compress(raw, compresslevel=6, mtime=0) if compress else raw


def write_label_volume(label: np.ndarray, like: Volume, path: str | Path) -> None:
    """Save ``label`` as ``path`` (``.nii.gz`` or ``.nii``) through a temporary file."""
    from cmrseg.utils import atomic_path

    data = label_volume_bytes(label, like, compress=str(path).endswith(".gz"))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


POSITIONS = ("base", "mid", "apex")


def slice_positions(n_slices: int) -> list[str]:
    """Base / mid / apex third of each slice index, in the slice order of the volume (ACDC: base first)."""
    return [POSITIONS[min(2, (3 * z) // max(n_slices, 1))] for z in range(n_slices)]


def context_stack(image: np.ndarray, z: int, context_slices: int = 0) -> np.ndarray:
    """Slice ``z`` of an ``H x W x Z`` volume, or with ``context_slices`` k its 2k+1 slices ``z-k .. z+k`` as
    ``H x W x (2k+1)``, the neighbours beyond the stack zeros (so the network can tell an end slice)."""
    if not context_slices:
        return np.ascontiguousarray(image[:, :, z])
    stack = np.zeros((*image.shape[:2], 2 * context_slices + 1), dtype=image.dtype)
    for channel, source in enumerate(range(z - context_slices, z + context_slices + 1)):
        if 0 <= source < image.shape[2]:
            stack[:, :, channel] = image[:, :, source]
    return stack


OTHER_PHASE = {"ED": "ES", "ES": "ED"}


def phase_partners(items: Sequence[Any], where: Callable[[Any], Path]) -> dict[str, Any]:
    """Each case's other-phase case (ED <-> ES of the same patient) among ``items`` (volumes or cases, with
    ``case``, ``patient`` and ``phase``), for ``model_info.other_phase``; ``where`` names an item's file in the
    one-line error for a case whose phase or partner is missing."""
    by_phase = {(item.patient, item.phase): item for item in items}
    partners = {}
    for item in items:
        partner = by_phase.get((item.patient, OTHER_PHASE.get(item.phase or "")))
        if partner is None:
            wanted = f"its {OTHER_PHASE[item.phase]} volume" if item.phase in OTHER_PHASE else "its phase (ED or ES)"
            raise CmrsegError(f"{where(item)}: this model also reads the patient's other phase (model_info.other_phase), "
                              f"but {wanted} is not in the folder; give both ED and ES of every patient")
        partners[item.case] = partner
    return partners


def check_partner(volume: Volume, partner: Volume) -> None:
    """Refuse an ED/ES pair whose grids differ: the model reads slice ``z`` of both."""
    if partner.image.shape != volume.image.shape:
        raise CmrsegError(f"{partner.path}: shape {partner.image.shape} differs from the other phase's "
                          f"{volume.image.shape} ({volume.path.name}); model_info.other_phase reads the same slice of both")


def slice_input(volume: Volume, z: int, context_slices: int = 0, partner: Volume | None = None) -> np.ndarray:
    """What the network reads of slice ``z``: :func:`context_stack`, then with a ``partner`` (the other phase's
    volume) the same slices of it as further channels, ``H x W x 2(2k+1)``."""
    own = context_stack(volume.image, z, context_slices)
    if partner is None:
        return own
    other = context_stack(partner.image, z, context_slices)
    return np.ascontiguousarray(np.dstack([own, other]))


def volume_samples(volumes: list[Volume], context_slices: int = 0, other_phase: bool = False) -> list[Sample]:
    """Every slice of every volume as a :class:`Sample` grouped by patient (``case_zNN`` ids), with
    ``context_slices`` neighbours each side in its image and, with ``other_phase``, the same slices of the
    patient's other phase behind them (:func:`slice_input`)."""
    from cmrseg.data.reader import Sample

    partners = phase_partners(volumes, lambda v: v.path) if other_phase else {}
    for volume in volumes if other_phase else ():
        check_partner(volume, partners[volume.case])
    return [Sample(volume.slice_id(z), slice_input(volume, z, context_slices, partners.get(volume.case)),
                   None if volume.label is None else np.ascontiguousarray(volume.label[:, :, z]),
                   group=volume.patient, volume=volume.case, slice_index=z, spacing=volume.spacing,
                   n_slices=volume.n_slices, phase=volume.phase, centre=context_slices)
            for volume in volumes for z in range(volume.n_slices)]


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
    image, data = _load_nifti(path)
    label = check_labels(path, data)
    row = manifest.get(stem)
    if row is not None:
        patient, phase, group = row["patient"], row["phase"] or None, row.get("group", "")
    else:
        patient = _patient_and_phase(stem, {})[0]
        info = _info_for(patient, info_dir)
        patient, phase = _patient_and_phase(stem, info)
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
                raise _missing_label(case.image_path, case.image_path.parent / (case.case + LABEL_SUFFIX))
            image, data = _load_nifti(case.label_path)
            check_same_pixdim(case, _header(case.image_path), image.header)
            labeled.append(LabelVolume(case.case, case.patient, case.phase, check_labels(case.label_path, data),
                                       header_spacing(image.header, case.label_path), case.info.get("Group", "")))
        return labeled
    manifest_path = directory / MANIFEST_FILE
    manifest = _read_manifest(manifest_path) if manifest_path.is_file() else {}
    info = Path(info_dir) if info_dir is not None else None
    return [_prediction_label(case.image_path, case.case, manifest, info) for case in cases]
