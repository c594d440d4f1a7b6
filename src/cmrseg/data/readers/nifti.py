"""Reading and writing NIfTI volumes with nibabel: the NIfTI reader of :mod:`cmrseg.data.readers`.

Slice ``z`` of a volume as an array, ``volume[:, :, z]``, is a 2D slice in the orientation of the PNG
datasets (rows, columns), so PNG-trained models and volume-trained models see the same pictures.
Non-uint8 intensities are mapped to 0-255 per volume (0.5th to 99.5th percentile), since the slice
pipeline works on 8-bit images; uint8 volumes are taken as they are (byte-identical to their PNGs).

Spacing is *known* when the header names a spatial unit (``xyzt_units``): it is then converted to mm.
A header whose unit is "unknown" (as in acdc96, pixdim 1) gives ``spacing None``: metrics and volumes are
then in voxels, and the tables say so.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from cmrseg.constants import NUM_CLASSES
import cmrseg.data.readers.layouts as layouts
from cmrseg.data.readers.base import Volume, VolumeCase
from cmrseg.data.spacing import check_spacing, spacing_text
from cmrseg.errors import CmrsegError

_UNIT_TO_MM = {"mm": 1.0, "meter": 1000.0, "micron": 0.001}


class NiftiReader:
    """NIfTI volumes in the ACDC, flat or nnU-Net layout (:mod:`cmrseg.data.readers.layouts`), or one NIfTI file."""

    name = "NIfTI"
    what = "NIfTI volumes"
    stacks = True

    def claims(self, path: Path) -> bool:
        return layouts.is_volume_dataset(path)

    def list_cases(self, path: Path, require_labels: bool = True) -> list[VolumeCase]:
        return layouts.list_cases(path, require_labels)

    def load(self, case: VolumeCase, with_label: bool = True) -> Volume:
        return load_volume(case, with_label)


def nifti_header(path: Path) -> Any:
    """The NIfTI header of ``path`` without reading its voxels."""
    return load_nifti(path, voxels=False)[0].header


def load_nifti(path: Path, voxels: bool = True) -> Any:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj) if voxels else np.empty((0, 0, 0))
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as err:
        raise CmrsegError(f"{path}: corrupt or unreadable NIfTI ({type(err).__name__}: {err})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    check_shape(path, data.shape)
    return image, data


def check_shape(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse a volume that is not one 3-D volume (a 4-D cine, a 2-D image) in one line naming ``path``."""
    if len(shape) == 4 and shape[3] != 1:
        raise CmrsegError(f"{path}: 4-D (cine) volume with {shape[3]} frames; cmrseg needs one 3-D volume per "
                          f"phase (for ACDC, the patientXXX_frameNN files named by Info.cfg)")
    if len(shape) not in (3, 4):
        raise CmrsegError(f"{path}: expected a 3-D volume, got {len(shape)} dimensions {shape}")


def check_header(path: Path) -> tuple[float, float, float] | None:
    """The checks of :func:`load_volume` that the header alone allows (readable, one 3-D volume, sane spacing), without
    reading the voxels: a folder of volumes is checked in a moment before the first is predicted. Returns the spacing
    (None when the header names no unit)."""
    image = load_nifti(path, voxels=False)[0]
    check_shape(path, tuple(image.shape))
    return header_spacing(image.header, path)


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
    image, data = load_nifti(case.image_path)
    if not np.issubdtype(data.dtype, np.integer) and not np.isfinite(data).all():
        raise CmrsegError(f"{case.image_path}: {np.count_nonzero(~np.isfinite(data))} voxel(s) are NaN or infinite; "
                          "expected finite intensities")
    label = None
    if with_label and case.label_path is not None:
        label_image, label_data = load_nifti(case.label_path)
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


def label_volume_bytes(label: np.ndarray, like: Volume, compress: bool = True) -> bytes:
    """``label`` (H x W x Z) as uint8 NIfTI bytes with the affine and header of the input volume ``like`` (a volume of
    another reader, without a NIfTI header, gets a fresh one with its affine)."""
    import gzip

    import nibabel as nib

    image_class = nib.Nifti2Image if isinstance(like.header, nib.Nifti2Header) else nib.Nifti1Image
    header = like.header.copy() if isinstance(like.header, nib.Nifti1Header) else nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    image = image_class(np.ascontiguousarray(label, dtype=np.uint8), like.affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    raw = image.to_bytes()
    return gzip.compress(raw, compresslevel=6, mtime=0) if compress else raw


def write_label_volume(label: np.ndarray, like: Volume, path: str | Path) -> None:
    """Save ``label`` as ``path`` (``.nii.gz`` or ``.nii``) through a temporary file."""
    from cmrseg.io.atomic import atomic_path

    data = label_volume_bytes(label, like, compress=str(path).endswith(".gz"))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
