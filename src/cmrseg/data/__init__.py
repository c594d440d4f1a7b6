"""Data: readers (every input a volume, :mod:`cmrseg.data.readers`), slicing, synthetic phantoms, splits,
normalisation and augmentation."""

from cmrseg.data.readers import list_cases, load_volume, read_volumes, reader_for, register_reader
from cmrseg.data.readers.png import find_image_dir, load_image, load_mask
from cmrseg.data.slicing import Sample, load_folder

__all__ = ["Sample", "find_image_dir", "list_cases", "load_folder", "load_image", "load_mask", "load_volume",
           "read_volumes", "reader_for", "register_reader"]
