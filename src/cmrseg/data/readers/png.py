"""Reading PNG slices: the folder layout ``DIR/image/<stem>.png`` + ``DIR/mask/<stem>_mask.png``, or one PNG file.

Images are 8-bit grayscale of any size; masks hold class indices 0-3. Every problem with a file
raises a one-line :class:`CmrsegError` that names the file. The PNG reader of :mod:`cmrseg.data.readers` gives each
image as a one-slice volume of unknown spacing, phase and patient.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cmrseg.constants import NUM_CLASSES
from cmrseg.data.readers.base import Volume, VolumeCase, natural_key
from cmrseg.errors import CmrsegError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MASK_SUFFIX = "_mask"


class PngReader:
    """8-bit PNG slices, each a one-slice volume (``H x W x 1``) of unknown spacing; its case id is the file stem and
    its label the mask PNG beside it (:func:`mask_path_for`). Claims any path no other reader claims (the fallback,
    so a missing folder is reported as one)."""

    name = "PNG"
    what = "PNG slices"
    stacks = False

    def claims(self, path: Path) -> bool:
        return True

    def list_cases(self, path: Path, require_labels: bool = True) -> list[VolumeCase]:
        """Each image with its mask path when the mask exists or is required (a missing one is refused when the image
        is read, so a broken image is named before a missing mask, as files are read in order)."""
        cases = []
        for image_path in list_images(path):
            mask_path = mask_path_for(image_path)
            label = mask_path if require_labels or mask_path.is_file() else None
            cases.append(VolumeCase(image_path.stem, image_path.stem, image_path, label, reader=self.name))
        return cases

    def load(self, case: VolumeCase, with_label: bool = True) -> Volume:
        image = load_image(case.image_path)
        mask = None
        if with_label and case.label_path is not None:
            if not case.label_path.is_file():
                raise CmrsegError(f"{case.image_path}: no mask found (expected {case.label_path})")
            mask = load_mask(case.label_path, image.shape)
        return Volume(case.case, case.patient, None, image[:, :, None], None if mask is None else mask[:, :, None],
                      np.eye(4), None, None, case.image_path, single_image=True)


def open_png(path: Path) -> Image.Image:
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
    image = open_png(path)
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
    image = open_png(path)
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
