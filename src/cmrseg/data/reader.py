"""Reading the folder layout ``DIR/image/<stem>.png`` + ``DIR/mask/<stem>_mask.png``.

Images are 8-bit grayscale of any size; masks hold class indices 0-3. Every problem with a file
raises a one-line :class:`CmrsegError` that names the file.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cmrseg.constants import NUM_CLASSES
from cmrseg.errors import CmrsegError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MASK_SUFFIX = "_mask"


@dataclass
class Sample:
    """One slice: its id (file stem), grayscale uint8 image and optional uint8 class mask.

    A 2.5-D sample's image is ``H x W x C``: its neighbours and itself, base first (see
    :func:`cmrseg.data.volumes.context_stack`), then with ``other_phase`` the same slices of the patient's
    other phase; ``centre`` is the channel of the slice itself (None: the middle one).

    Slices cut from a volume also know their patient (``group``, the unit of every split), their
    volume's case id, their index ``z`` in it, the volume's slice count, cardiac phase (ED/ES, None when
    unknown) and voxel spacing in mm (None when unknown).
    """

    id: str
    image: np.ndarray
    mask: np.ndarray | None = None
    group: str | None = None
    volume: str | None = None
    slice_index: int | None = None
    spacing: tuple[float, float, float] | None = None
    n_slices: int | None = None
    phase: str | None = None
    centre: int | None = None

    @property
    def slice_image(self) -> np.ndarray:
        """The ``H x W`` slice itself (channel ``centre`` of a stacked image, by default the middle one)."""
        if self.image.ndim == 2:
            return self.image
        return self.image[:, :, self.image.shape[2] // 2 if self.centre is None else self.centre]

    def conditions(self, names: Sequence[str]) -> np.ndarray:
        """This slice's values of ``model_info.conditions`` (:mod:`cmrseg.data.conditions`); one-line error if unknown."""
        from cmrseg.data.conditions import condition_values

        if names and self.volume is None:
            raise CmrsegError(f"slice {self.id}: this model is conditioned on {' and '.join(names)} "
                              "(model_info.conditions), which only slices of NIfTI volumes know, not PNG slices")
        return condition_values(names, self.phase, self.slice_index, self.n_slices, f"slice {self.id}")


def channels_first(image: np.ndarray) -> np.ndarray:
    """``C x H x W`` view of an ``H x W`` image (C = 1) or a channel-last ``H x W x C`` 2.5-D stack."""
    return image[None] if image.ndim == 2 else image.transpose(2, 0, 1)


def natural_key(text: str) -> list[object]:
    """Sort key that orders embedded numbers numerically (cmr2 before cmr10)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _open_png(path: Path) -> Image.Image:
    try:
        with path.open("rb") as handle:
            if handle.read(8) != PNG_SIGNATURE:
                raise CmrsegError(f"{path}: not a PNG file")
        image = Image.open(path)
        image.load()
    except CmrsegError:
        raise
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise CmrsegError(f"{path}: corrupt PNG ({err})") from None
    return image


def load_image(path: str | Path) -> np.ndarray:
    """Read a PNG as uint8 grayscale; colour images are converted with a warning, 16-bit rescaled."""
    path = Path(path)
    image = _open_png(path)
    if image.mode in ("I;16", "I;16B", "I"):
        array = np.asarray(image, dtype=np.float64)
        span = array.max() - array.min()
        warnings.warn(f"{path}: 16-bit image rescaled to 8-bit", stacklevel=2)
        return ((array - array.min()) / (span or 1.0) * 255).round().astype(np.uint8)
    if image.mode != "L":
        warnings.warn(f"{path}: {image.mode} image converted to grayscale", stacklevel=2)
        image = image.convert("L")
    return np.asarray(image, dtype=np.uint8).copy()


def load_mask(path: str | Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read a class-index mask; values must lie in 0..3 and the size must match ``shape`` when given."""
    path = Path(path)
    image = _open_png(path)
    if image.mode not in ("L", "P", "I", "I;16"):
        raise CmrsegError(f"{path}: mask must be a single-channel PNG of class indices, got mode {image.mode}")
    mask = np.asarray(image)
    if mask.max(initial=0) >= NUM_CLASSES or mask.min(initial=0) < 0:
        bad = sorted(int(v) for v in np.unique(mask) if not 0 <= v < NUM_CLASSES)
        raise CmrsegError(f"{path}: mask values must be 0-{NUM_CLASSES - 1}, found {bad[:5]}")
    if shape is not None and mask.shape != tuple(shape):
        raise CmrsegError(f"{path}: mask size {mask.shape[1]}x{mask.shape[0]} does not match its image {shape[1]}x{shape[0]}")
    return mask.astype(np.uint8)


def find_image_dir(directory: str | Path) -> Path:
    """Return ``DIR/image`` if present, else ``DIR`` itself when it holds PNGs directly."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CmrsegError(f"{directory}: {'file' if directory.suffix else 'folder'} not found")
    if (directory / "image").is_dir():
        return directory / "image"
    return directory


def list_images(directory: str | Path) -> list[Path]:
    """Image files of a folder in natural order (a file alone: a one-image folder); hidden files are skipped, an empty
    folder or two files with one id (``a.png`` and ``a.PNG``) are errors."""
    if Path(directory).is_file():
        return [Path(directory)]
    image_dir = find_image_dir(directory)
    files = sorted((p for p in image_dir.iterdir() if p.is_file() and not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    if not files:
        raise CmrsegError(f"{image_dir}: no images found (expected {Path(directory) / 'image'}/<id>.png)")
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise CmrsegError(f"{seen[path.stem]} and {path.name}: both give the image id '{path.stem}'; rename one")
        seen[path.stem] = path
    return files


def mask_path_for(image_path: Path) -> Path:
    """``DIR/image/cmr1.png`` -> ``DIR/mask/cmr1_mask.png``."""
    return image_path.parent.parent / "mask" / f"{image_path.stem}{MASK_SUFFIX}.png"


def load_folder(directory: str | Path, require_masks: bool = True, context_slices: int = 0,
                other_phase: bool = False) -> list[Sample]:
    """Load every slice of a folder; with ``require_masks`` each image must have its mask.

    A folder of NIfTI volumes (see :mod:`cmrseg.data.volumes`) gives every slice of every volume, with
    ``context_slices`` neighbours on each side stacked behind it (2.5-D) and with ``other_phase`` the same
    slices of the patient's other phase; PNG slices have neither."""
    from cmrseg.data.volumes import is_volume_dataset, load_volume_folder, volume_samples

    if is_volume_dataset(directory):
        return volume_samples(load_volume_folder(directory, require_labels=require_masks), context_slices, other_phase)
    if context_slices or other_phase:
        key, why = ((f"context_slices {context_slices}", "neighbouring slices") if context_slices
                    else ("other_phase", "ED and ES of each patient"))
        raise CmrsegError(f"{directory}: model_info.{key} needs NIfTI volumes ({why}), this folder holds PNG slices")
    samples = []
    for image_path in list_images(directory):
        image = load_image(image_path)
        mask_path = mask_path_for(image_path)
        mask = None
        if mask_path.is_file():
            mask = load_mask(mask_path, image.shape)
        elif require_masks:
            raise CmrsegError(f"{image_path}: no mask found (expected {mask_path})")
        samples.append(Sample(image_path.stem, image, mask))
    return samples


def load_mask_folder(directory: str | Path) -> dict[str, np.ndarray]:
    """``<id>_mask.png`` files of a folder by stem (``cmr121_mask``); accepts ``DIR/mask`` or ``DIR`` itself."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CmrsegError(f"{directory}: folder not found")
    if (directory / "mask").is_dir():
        directory = directory / "mask"
    pattern = f"*{MASK_SUFFIX}.png"
    files = sorted((p for p in directory.glob(pattern) if not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    if not files:
        raise CmrsegError(f"{directory}: no mask PNGs found (expected {pattern})")
    return {path.stem: load_mask(path) for path in files}
