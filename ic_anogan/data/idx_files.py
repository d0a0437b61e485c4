"""MNIST-format IDX files (one-class protocol: one class good, every other anomalous)."""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from ic_anogan.data.image_set import GOOD, DataError, ImageSet
from ic_anogan.data.preprocessing import resize_to_model, to_model_range

_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801
_IDX_SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: str, expected_magic: int) -> np.ndarray:
    """Reads an IDX file (gzip or not) into a uint8 array.

    Raises:
      DataError: missing file, wrong magic number or truncated data.
    """
    if not os.path.exists(path):
        raise DataError(f"{path}: IDX file not found")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e}); expected an IDX file, plain or gzipped"
                        ) from e
    if len(data) < 4:
        raise DataError(f"{path}: too short for an IDX header")
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expected_magic:
        raise DataError(f"{path}: IDX magic number 0x{magic:08x}, expected "
                        f"0x{expected_magic:08x} ({'images' if expected_magic == _IDX_IMAGES_MAGIC else 'labels'})")
    ndim = magic & 0xFF
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path}: cut off inside its header (expected {ndim} dimension "
                        f"sizes after the magic number, {len(data)} bytes in the file)")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: header promises {shape} = {int(np.prod(shape))} bytes, "
                        f"file holds {body.size}")
    return body.reshape(shape)


def _idx_file(folder: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise DataError(f"{folder}: expected {stem} or {stem}.gz")


def load_idx(folder: str, split: str, normal_class: int, image_size: int,
             only_normal: bool) -> ImageSet:
    """MNIST-format split with `normal_class` good (0) and every other class anomalous (1)."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: IDX folder not found")
    image_stem, label_stem = _IDX_SPLITS[split]
    images = read_idx(_idx_file(folder, image_stem), _IDX_IMAGES_MAGIC)
    classes = read_idx(_idx_file(folder, label_stem), _IDX_LABELS_MAGIC)
    if len(images) != len(classes):
        raise DataError(f"{folder}: {len(images)} images but {len(classes)} labels in {split}")
    if normal_class not in set(np.unique(classes).tolist()):
        raise DataError(f"{folder}: class {normal_class} does not occur in the {split} split")
    keep = np.flatnonzero(classes == normal_class) if only_normal else np.arange(len(classes))
    gray = images[keep].astype(np.float32)[..., None] / 255.0
    model_input = resize_to_model(gray, image_size).numpy() if gray.shape[1] != image_size \
        else to_model_range(gray)
    labels = (classes[keep] != normal_class).astype(np.int64)
    ids = [f"idx:{split}:{i}" for i in keep]
    types = [GOOD if c == normal_class else f"class_{c}" for c in classes[keep]]
    return ImageSet(model_input.astype(np.float32), ids, labels, types)
