"""Data: reading image/mask folders, synthetic phantoms, splits, normalisation and augmentation."""

from cmrseg.data.reader import Sample, find_image_dir, load_folder, load_image, load_mask

__all__ = ["Sample", "find_image_dir", "load_folder", "load_image", "load_mask"]
