"""Synthetic short-axis phantoms in the cmr96 folder layout, so demos and tests run without real data.

Each phantom has a bright LV blood pool inside a darker myocardium ring and a bright RV crescent wrapped
around one side of it, on a textured background with noise. Size, position, shape and rotation are
random, and everything is drawn from one generator seeded by ``seed``, so a seed gives the same set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from cmrseg.io.outputs import atomic_dir


def _ellipse(grid_y: np.ndarray, grid_x: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    dy, dx = grid_y - cy, grid_x - cx
    u = dx * cos + dy * sin
    v = -dx * sin + dy * cos
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random background between roughly 20 and 110 with a few organ-like blobs."""
    coarse = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), sigma=size / 12)
    coarse = (coarse - coarse.min()) / (np.ptp(coarse) or 1.0)
    fine = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), sigma=1.5)
    return 20 + 90 * coarse + 12 * fine


@dataclass(frozen=True)
class HeartShape:
    """Geometry of one phantom slice in pixels: LV ellipse, myocardial wall and the RV beside it."""

    cy: float
    cx: float
    angle: float
    lv_ry: float
    lv_rx: float
    wall: float
    side: float
    offset: float
    rv_ry: float
    rv_rx: float

    def scaled(self, cavity: float, wall: float = 1.0, rv: float = 1.0) -> HeartShape:
        """The same heart with the LV cavity, the wall thickness and the RV scaled (slices, phases)."""
        return replace(self, lv_ry=self.lv_ry * cavity, lv_rx=self.lv_rx * cavity, wall=self.wall * wall,
                       offset=self.offset * (cavity + wall) / 2, rv_ry=self.rv_ry * rv, rv_rx=self.rv_rx * rv)


def random_shape(rng: np.random.Generator, size: int = 96) -> HeartShape:
    """Draw a random heart geometry for a ``size`` x ``size`` slice."""
    scale = size / 96.0
    cy, cx = size / 2 + rng.uniform(-10, 10) * scale, size / 2 + rng.uniform(-10, 10) * scale
    angle = rng.uniform(0, 2 * np.pi)
    lv_r = rng.uniform(8, 15) * scale
    lv_ry, lv_rx = lv_r * rng.uniform(0.85, 1.15), lv_r
    wall = rng.uniform(3, 6) * scale
    side = angle + rng.uniform(-0.4, 0.4)
    offset = (lv_r + wall) * rng.uniform(0.55, 0.85)
    rv_ry, rv_rx = (lv_r + wall) * rng.uniform(1.1, 1.5), (lv_r + wall) * rng.uniform(0.8, 1.1)
    return HeartShape(cy, cx, angle, lv_ry, lv_rx, wall, side, offset, rv_ry, rv_rx)


def render_phantom(shape: HeartShape, rng: np.random.Generator, size: int = 96,
                   gap: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw (image uint8, mask uint8) of ``shape`` on a random textured, noisy background; the RV keeps ``gap``
    pixels from the myocardium (default 1.5 pixels of the 96-pixel grid)."""
    grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float64)
    scale = size / 96.0 if gap is None else gap / 1.5
    lv = _ellipse(grid_y, grid_x, shape.cy, shape.cx, shape.lv_ry, shape.lv_rx, shape.angle)
    epi = _ellipse(grid_y, grid_x, shape.cy, shape.cx, shape.lv_ry + shape.wall, shape.lv_rx + shape.wall, shape.angle)
    rv_outer = _ellipse(grid_y, grid_x, shape.cy + shape.offset * np.sin(shape.side),
                        shape.cx + shape.offset * np.cos(shape.side), shape.rv_ry, shape.rv_rx, shape.side)
    rv = rv_outer & ~ndimage.binary_dilation(epi, iterations=max(1, int(round(1.5 * scale))))
    mask = np.zeros((size, size), np.uint8)
    mask[rv] = 1
    mask[epi & ~lv] = 2
    mask[lv] = 3
    image = _texture(rng, size)
    image[epi] = rng.uniform(55, 85)
    image[lv] = rng.uniform(170, 230)
    image[rv] = rng.uniform(140, 210)
    image = ndimage.gaussian_filter(image, sigma=0.8) + rng.normal(0, rng.uniform(4, 12), image.shape)
    return np.clip(image, 0, 255).round().astype(np.uint8), mask


def make_phantom(rng: np.random.Generator, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Draw one (image uint8, mask uint8) pair of ``size`` x ``size`` pixels."""
    return render_phantom(random_shape(rng, size), rng, size)


MIN_SIZE = 16
"""Smallest phantom side in pixels: below it the heart does not fit."""


def check_synth_arguments(count: int, seed: int, size: int) -> None:
    """One-line errors for a count below 1, a negative seed or a side below :data:`MIN_SIZE`."""
    from cmrseg.errors import CmrsegError

    if count < 1:
        raise CmrsegError(f"count must be at least 1, got {count}", key="count")
    if size < MIN_SIZE:
        raise CmrsegError(f"size must be at least {MIN_SIZE} pixels, got {size}", key="size")
    if seed < 0:
        raise CmrsegError(f"seed must be 0 or more, got {seed}", key="seed")


def write_synthetic_dataset(
    out: str | Path, count: int, seed: int = 0, size: int = 96, with_masks: bool = True, overwrite: bool = False,
) -> Path:
    """Write ``count`` phantoms as ``out/image/synthN.png`` (+ ``out/mask/synthN_mask.png``); returns ``out``.

    ``out`` must be new, empty, an earlier synth output, or ``overwrite`` (see :mod:`cmrseg.io.outputs`)."""
    from cmrseg.io.outputs import check_output_dir

    check_synth_arguments(count, seed, size)
    planned = [f"image/synth{i}.png" for i in range(1, count + 1)]
    if with_masks:
        planned += [f"mask/synth{i}_mask.png" for i in range(1, count + 1)]
    out = check_output_dir(out, "data synth", overwrite=overwrite, files=planned)
    rng = np.random.default_rng(seed)
    with atomic_dir(out, "data synth") as tmp:
        (tmp / "image").mkdir()
        if with_masks:
            (tmp / "mask").mkdir()
        for index in range(1, count + 1):
            image, mask = make_phantom(rng, size)
            Image.fromarray(image).save(tmp / "image" / f"synth{index}.png")
            if with_masks:
                Image.fromarray(mask).save(tmp / "mask" / f"synth{index}_mask.png")
    return out


SYNTH_SPACING = (1.6, 1.6, 8.0)
"""Voxel size (mm) of synthetic volumes: about ACDC's on the 96x96 grid."""
ES_CAVITY, ES_WALL, ES_RV = 0.72, 1.25, 0.8
"""End-systolic LV cavity, wall thickness and RV size relative to end-diastole."""
VOLUME_LAYOUTS = ("acdc", "flat", "nnunet")


def phantom_volume(shape: HeartShape, rng: np.random.Generator, n_slices: int, size: int, es: bool,
                   gap: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels), each ``size x size x n_slices``: the heart tapering from base (slice 0) to apex (``gap``:
    :func:`render_phantom`'s)."""
    images, masks = [], []
    for z in range(n_slices):
        taper = 1.0 - 0.55 * (z / max(n_slices - 1, 1)) ** 1.5
        slice_shape = shape.scaled(taper * (ES_CAVITY if es else 1.0), ES_WALL if es else 1.0,
                                   taper * (ES_RV if es else 1.0))
        image, mask = render_phantom(slice_shape, rng, size, gap)
        images.append(image)
        masks.append(mask)
    return np.stack(images, axis=-1), np.stack(masks, axis=-1)


NATIVE_HEART_MM = HeartShape(cy=0.0, cx=0.0, angle=0.6, lv_ry=26.0, lv_rx=24.0, wall=8.0, side=0.9, offset=24.0,
                             rv_ry=46.0, rv_rx=32.0)
"""An analytic heart in mm about the field of view's centre (LV cavity about 50 mm across, 8 mm wall), as a native
short-axis scan holds it: a small part of a large field of view."""


def native_phantom_volume(spacing: float, size: int, n_slices: int, seed: int, es: bool = False
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) of :data:`NATIVE_HEART_MM` drawn on a ``size`` x ``size`` grid of ``spacing`` mm pixels, so
    grids of different spacing and size hold the same heart (same mL up to the discretisation)."""
    shape = replace(NATIVE_HEART_MM, cy=size / 2 - 0.5, cx=size / 2 - 0.5,
                    **{key: getattr(NATIVE_HEART_MM, key) / spacing
                       for key in ("lv_ry", "lv_rx", "wall", "offset", "rv_ry", "rv_rx")})
    return phantom_volume(shape, np.random.default_rng(seed), n_slices, size, es, gap=2.0 / spacing)


def _nifti_bytes(data: np.ndarray, spacing: tuple[float, float, float] | None) -> bytes:
    import gzip

    import nibabel as nib

    affine = np.diag([*(spacing or (1.0, 1.0, 1.0)), 1.0])
    image = nib.Nifti1Image(data.astype(np.uint8), affine)
    image.header.set_zooms(spacing or (1.0, 1.0, 1.0))
    image.header.set_xyzt_units("mm" if spacing else "unknown")
    return gzip.compress(image.to_bytes(), mtime=0)


def _volume_paths(root: Path, layout: str, patient: str, frame: int, phase: str) -> tuple[Path, Path]:
    if layout == "acdc":
        case = root / patient / f"{patient}_frame{frame:02d}"
        return Path(f"{case}.nii.gz"), Path(f"{case}_gt.nii.gz")
    if layout == "flat":
        return root / f"{patient}_{phase}.nii.gz", root / f"{patient}_{phase}_gt.nii.gz"
    return root / "imagesTr" / f"{patient}_{phase}_0000.nii.gz", root / "labelsTr" / f"{patient}_{phase}.nii.gz"


def write_synthetic_volumes(
    out: str | Path,
    patients: int,
    seed: int = 0,
    size: int = 96,
    layout: str = "acdc",
    spacing: tuple[float, float, float] | None = SYNTH_SPACING,
    with_labels: bool = True,
    slices: tuple[int, int] = (6, 10),
    overwrite: bool = False,
    grids: Sequence[tuple[float, int]] | None = None,
) -> Path:
    """Write ED and ES phantom volumes of ``patients`` patients in an ACDC, flat or nnU-Net layout.

    ACDC: ``patientNNN/patientNNN_frame01.nii.gz`` (ED) and ``_frame10`` (ES), ``_gt`` labels and ``Info.cfg``;
    flat: ``patientNNN_ED.nii.gz`` / ``_ES`` with ``_gt``; nnU-Net: ``imagesTr/..._0000.nii.gz`` + ``labelsTr/``.
    ``spacing`` None writes headers without a spatial unit (spacing unknown, as in acdc96). With ``grids`` (one
    ``(in-plane mm, size)`` per patient, ``patients`` ignored) each patient is :data:`NATIVE_HEART_MM` in a full field
    of view of that grid, ``spacing``'s slice thickness (8 mm without one), as a scanner writes it. ``out`` follows
    the rules of :func:`write_synthetic_dataset`."""
    from cmrseg.errors import CmrsegError
    from cmrseg.io.outputs import check_output_dir

    patients = len(grids) if grids is not None else patients
    check_synth_arguments(patients, seed, size)
    if layout not in VOLUME_LAYOUTS:
        raise CmrsegError(f"layout must be one of {', '.join(VOLUME_LAYOUTS)}, got '{layout}'", key="layout")
    out = Path(out)
    planned = [str(path.relative_to(out)) for index in range(1, patients + 1) for frame, phase in ((1, "ED"), (10, "ES"))
               for path in _volume_paths(out, layout, f"patient{index:03d}", frame, phase)[: 2 if with_labels else 1]]
    if layout == "acdc":
        planned += [f"patient{index:03d}/Info.cfg" for index in range(1, patients + 1)]
    out = check_output_dir(out, "data synth", overwrite=overwrite, files=planned)
    rng = np.random.default_rng(seed)
    with atomic_dir(out, "data synth") as tmp:
        for index in range(1, patients + 1):
            patient, shape = f"patient{index:03d}", random_shape(rng, size)
            n_slices = int(rng.integers(slices[0], slices[1] + 1))
            grid = None if grids is None else grids[index - 1]
            voxel = spacing if grid is None else (grid[0], grid[0], spacing[2] if spacing else 8.0)
            for frame, phase in ((1, "ED"), (10, "ES")):
                es = phase == "ES"
                image, labels = (phantom_volume(shape, rng, n_slices, size, es) if grid is None
                                 else native_phantom_volume(grid[0], grid[1], n_slices, seed + index, es))
                image_path, label_path = _volume_paths(tmp, layout, patient, frame, phase)
                image_path.parent.mkdir(parents=True, exist_ok=True)
                image_path.write_bytes(_nifti_bytes(image, voxel))
                if with_labels:
                    label_path.parent.mkdir(parents=True, exist_ok=True)
                    label_path.write_bytes(_nifti_bytes(labels, voxel))
            if layout == "acdc":
                (tmp / patient / "Info.cfg").write_text(f"ED: 1\nES: 10\nGroup: SYN\nNbFrame: 10\nNbSlices: {n_slices}\n")
    return out
