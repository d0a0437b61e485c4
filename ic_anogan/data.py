"""Image sources: folders, MVTec-AD-style roots, MNIST-format IDX files, synthetic ICs.

Every source yields an `ImageSet`: images at the model's size in [-1, 1], with
an id per image (its path, or a synthetic / IDX index), labels where known and
pixel masks where present. Images are decoded once, in parallel threads, into
memory (a 64x64 image takes 16 KiB, so a production line's good set fits), and
`make_dataset` turns them into a shuffled, batched, prefetching `tf.data`
pipeline.

How a pixel becomes a model input is defined once, by `gray_from_decoded` and
`resize_to_model`, and the SavedModel's in-graph decoding (export.py) uses the
same functions, so a served image gets exactly the preprocessing a trained one
did.

Source specs (`resolve_source`):
  * None or "synthetic": the built-in synthetic IC generator.
  * "idx:DIR:K": MNIST-format IDX files in DIR, class K normal (one-class protocol).
  * a folder with `train/good/` or `test/`: an MVTec-AD-style root.
  * any other folder: its images, searched recursively (labels unknown).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gzip
import os
import re
import struct
import warnings
import zlib
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# tf.image.rgb_to_grayscale's weights: numpy and the exported graph must agree.
GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], np.float32)
GOOD = "good"
UNKNOWN_LABEL = -1
# Largest image decoded, in pixels (width x height): 100 megapixels holds any
# inspection camera's frame (a 12-bit 65 MP sensor is the largest common one)
# and stops a decompression bomb before it takes gigabytes. --max_image_pixels
# raises it.
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
# A JPEG this many times larger than the model on both sides is decoded at a
# reduced DCT scale (Pillow's draft), still at least DRAFT_MARGIN times the
# model's size, so the antialiased resize that follows sees enough pixels.
DRAFT_MARGIN = 4


class DataError(ValueError):
    """Bad input data; the message names the path and what was expected."""


@dataclasses.dataclass
class ImageSet:
    """Decoded images with their ids, labels and masks.

    Attributes:
      images: float32 [N, S, S, 1] in [-1, 1].
      ids: where each image came from (a path, or e.g. "synthetic:test:17").
      labels: int [N]: 0 good, 1 anomalous, -1 unknown.
      defect_types: per image, "good", the defect type, or "" when unknown.
      masks: float32 [N, S, S, 1] in {0, 1} or None; rows without a mask are 0.
      has_mask: bool [N], which rows of `masks` are real.
      skipped: (path, reason) for each unreadable file skipped on request.
    """

    images: np.ndarray
    ids: list
    labels: np.ndarray
    defect_types: list
    masks: Optional[np.ndarray] = None
    has_mask: Optional[np.ndarray] = None
    skipped: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        n = len(self.images)
        if not (len(self.ids) == len(self.labels) == len(self.defect_types) == n):
            raise ValueError("ImageSet fields must all have one entry per image")
        if self.has_mask is None:
            self.has_mask = np.zeros(n, bool)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def has_labels(self) -> bool:
        return len(self) > 0 and bool(np.all(self.labels >= 0))

    def subset(self, indices: Sequence[int]) -> "ImageSet":
        idx = np.asarray(indices, dtype=np.int64)
        return ImageSet(
            images=self.images[idx], ids=[self.ids[i] for i in idx],
            labels=self.labels[idx], defect_types=[self.defect_types[i] for i in idx],
            masks=None if self.masks is None else self.masks[idx],
            has_mask=self.has_mask[idx], skipped=list(self.skipped))

    @staticmethod
    def concatenate(sets: Sequence["ImageSet"]) -> "ImageSet":
        any_masks = any(s.masks is not None for s in sets)
        masks = None
        if any_masks:
            masks = np.concatenate([s.masks if s.masks is not None
                                    else np.zeros_like(s.images) for s in sets])
        return ImageSet(
            images=np.concatenate([s.images for s in sets]),
            ids=[i for s in sets for i in s.ids],
            labels=np.concatenate([s.labels for s in sets]),
            defect_types=[t for s in sets for t in s.defect_types],
            masks=masks, has_mask=np.concatenate([s.has_mask for s in sets]),
            skipped=[k for s in sets for k in s.skipped])


# --------------------------------------------------------------------------
# Pixels -> model input (shared with the exported graph).

def gray_from_decoded(pixels: np.ndarray) -> np.ndarray:
    """Decoded pixels (H, W[, C]) of any integer or float dtype -> gray float32 [H, W] in [0, 1]."""
    array = np.asarray(pixels)
    if np.issubdtype(array.dtype, np.integer):
        scale = 65535.0 if array.dtype.itemsize >= 2 else 255.0
        if array.dtype.itemsize >= 4:  # PIL's mode "I" holds 16-bit data in int32
            scale = 65535.0 if array.max(initial=0) > 255 else 255.0
        array = array.astype(np.float32) / scale
    else:
        array = np.clip(array.astype(np.float32), 0.0, 1.0)
    if array.ndim == 3:
        channels = array.shape[-1]
        if channels in (2, 4):  # drop alpha
            array = array[..., :channels - 1]
            channels -= 1
        if channels == 3:
            array = np.tensordot(array, GRAY_WEIGHTS, axes=([-1], [0]))
        else:
            array = array[..., 0]
    return array.astype(np.float32)


def resize_to_model(gray: tf.Tensor, image_size: int) -> tf.Tensor:
    """Gray [..., H, W, 1] in [0, 1] -> [..., S, S, 1] in [-1, 1].

    Antialiased bilinear, so downsampling a camera image averages its pixels
    rather than aliasing them.
    """
    gray = tf.convert_to_tensor(gray, tf.float32)
    resized = tf.image.resize(gray, [image_size, image_size], method="bilinear",
                              antialias=True)
    return tf.clip_by_value(resized, 0.0, 1.0) * 2.0 - 1.0


def _decode(path: str, max_pixels: int, target_size: Optional[int]) -> tuple:
    """(gray float32 [h, w] in [0, 1], original (H, W)); see `read_gray`."""
    try:
        with warnings.catch_warnings():
            # The pixel limit below replaces Pillow's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if max_pixels > (Image.MAX_IMAGE_PIXELS or 0):
                # Pillow refuses above twice its own limit at open(); a user who
                # raised ours must get what they asked for.
                Image.MAX_IMAGE_PIXELS = max_pixels
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise DataError(
                        f"{path}: {width}x{height} = {width * height} pixels, above the limit "
                        f"of {max_pixels} pixels (--max_image_pixels); a model needs far "
                        "fewer. Raise the limit if the file is genuine")
                if (target_size and image.format == "JPEG"
                        and min(width, height) >= 2 * DRAFT_MARGIN * target_size):
                    # Decode at 1/2, 1/4 or 1/8 scale: the full frame is never in memory.
                    image.draft(image.mode, (DRAFT_MARGIN * target_size,) * 2)
                image.load()  # forces a full decode, so truncation is caught here
                if image.mode == "P":
                    image = image.convert("RGBA" if "transparency" in image.info else "RGB")
                elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                    image = image.convert("RGB")
                elif image.mode == "1":
                    image = image.convert("L")
                pixels = np.array(image)
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: above the limit of {max_pixels} pixels "
                        f"(--max_image_pixels), refused before decoding ({e}). Raise the limit "
                        "if the file is genuine") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, zlib.error,
            MemoryError) as e:
        raise DataError(f"{path}: not a decodable PNG/JPEG/BMP/TIFF image ({e})") from e
    if pixels.ndim not in (2, 3) or pixels.size == 0:
        raise DataError(f"{path}: expected a 2-D image, got pixel array {pixels.shape}")
    return gray_from_decoded(pixels), (height, width)


def read_gray(path: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Reads an image file as gray float32 [H, W] in [0, 1].

    Args:
      path: the file.
      max_pixels: larger images (width x height) are refused before decoding.

    Raises:
      DataError: the file cannot be decoded completely, or is above the pixel limit.
    """
    return _decode(path, max_pixels, None)[0]


def _to_model(gray: np.ndarray, image_size: int) -> np.ndarray:
    if gray.shape == (image_size, image_size):
        return (np.clip(gray, 0.0, 1.0) * 2.0 - 1.0)[..., None].astype(np.float32)
    return resize_to_model(gray[..., None], image_size).numpy()


def list_images(folder: str) -> list:
    """All image files under `folder`, recursively, sorted.

    Raises:
      DataError: `folder` is missing, not a folder, or holds no image file.
    """
    if not os.path.exists(folder):
        raise DataError(f"{folder}: folder not found")
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: expected a folder of images, found a file")
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        paths.extend(os.path.join(root, f) for f in sorted(files)
                     if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
    if not paths:
        raise DataError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
    return paths


def load_image_files(paths: Sequence[str], image_size: int, skip_corrupt: bool = False,
                     workers: Optional[int] = None, with_sizes: bool = False,
                     max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
    """Decodes `paths` in parallel threads to float32 [N, S, S, 1] in [-1, 1].

    Args:
      paths: image files.
      image_size: the model's image size.
      skip_corrupt: skip and report undecodable files instead of raising.
      workers: decoding threads (default: CPU count).
      with_sizes: also return each kept file's original (H, W).
      max_image_pixels: larger files are refused (or skipped) before decoding.

    Returns:
      (images, kept_paths, skipped) where skipped lists (path, reason);
      with `with_sizes`, a fourth element lists the original sizes.

    Raises:
      DataError: a file cannot be decoded (unless skip_corrupt), or none can.
    """
    workers = workers or os.cpu_count() or 1

    def decode(path):
        try:
            gray, size = _decode(path, max_image_pixels, image_size)
        except DataError as e:
            if not skip_corrupt:
                raise
            return path, None, None, str(e)
        return path, _to_model(gray, image_size), size, None

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(decode, paths))
    images = [r[1] for r in results if r[1] is not None]
    kept = [r[0] for r in results if r[1] is not None]
    sizes = [r[2] for r in results if r[1] is not None]
    skipped = [(r[0], r[3]) for r in results if r[1] is None]
    if not images:
        raise DataError(f"no decodable image among {len(paths)} files "
                        f"(first: {paths[0] if paths else 'none'})")
    stacked = np.stack(images).astype(np.float32)
    return (stacked, kept, skipped, sizes) if with_sizes else (stacked, kept, skipped)


# --------------------------------------------------------------------------
# Folder and MVTec-AD-style sources.

def is_mvtec_root(folder: str) -> bool:
    return (os.path.isdir(os.path.join(folder, "train", GOOD))
            or os.path.isdir(os.path.join(folder, "test")))


def load_folder(folder: str, image_size: int, skip_corrupt: bool = False,
                label: int = UNKNOWN_LABEL, defect_type: str = "",
                max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageSet:
    """All images under `folder` (recursive) with one label for all."""
    images, kept, skipped = load_image_files(list_images(folder), image_size, skip_corrupt,
                                             max_image_pixels=max_image_pixels)
    n = len(kept)
    return ImageSet(images, kept, np.full(n, label, np.int64), [defect_type] * n,
                    skipped=skipped)


def load_mvtec_train(root: str, image_size: int, skip_corrupt: bool = False,
                     max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageSet:
    """The good training images of an MVTec-AD-style root (`train/good/`)."""
    folder = os.path.join(root, "train", GOOD)
    if not os.path.isdir(folder):
        raise DataError(f"{root}: expected an MVTec-style root with train/good/")
    return load_folder(folder, image_size, skip_corrupt, label=0, defect_type=GOOD,
                       max_image_pixels=max_image_pixels)


def _mask_path(ground_truth: str, defect_type: str, image_path: str) -> str:
    stem = os.path.splitext(os.path.basename(image_path))[0]
    return os.path.join(ground_truth, defect_type, stem + "_mask.png")


def load_mvtec_test(test_root: str, image_size: int, skip_corrupt: bool = False,
                    ground_truth: Optional[str] = None,
                    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageSet:
    """Labelled images of a `test/<type>/` folder; masks from `ground_truth/<type>/`.

    Args:
      test_root: the folder whose sub-folders are `good` and defect types.
      ground_truth: folder of `<type>/<name>_mask.png`; default: `test_root/../ground_truth`.

    Raises:
      DataError: no sub-folders, or a mask whose size differs from its image.
    """
    if not os.path.isdir(test_root):
        raise DataError(f"{test_root}: folder not found")
    types = sorted(d for d in os.listdir(test_root)
                   if os.path.isdir(os.path.join(test_root, d)) and not d.startswith("."))
    if not types:
        raise DataError(f"{test_root}: expected sub-folders named 'good' and defect types")
    if ground_truth is None:
        ground_truth = os.path.join(os.path.dirname(os.path.abspath(test_root)),
                                    "ground_truth")
    parts = []
    for defect_type in types:
        paths = list_images(os.path.join(test_root, defect_type))
        images, kept, skipped, sizes = load_image_files(
            paths, image_size, skip_corrupt, with_sizes=True, max_image_pixels=max_image_pixels)
        n = len(kept)
        masks = np.zeros_like(images)
        has_mask = np.zeros(n, bool)
        for i, (path, size) in enumerate(zip(kept, sizes)):
            mask_path = _mask_path(ground_truth, defect_type, path)
            if defect_type == GOOD or not os.path.exists(mask_path):
                continue
            mask = read_gray(mask_path, max_image_pixels)
            if mask.shape != tuple(size):
                raise DataError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but "
                                f"its image {path} is {size[1]}x{size[0]}; expected equal sizes")
            masks[i] = (_to_model(mask, image_size) > 0.0).astype(np.float32)
            has_mask[i] = True
        label = 0 if defect_type == GOOD else 1
        parts.append(ImageSet(images, kept, np.full(n, label, np.int64), [defect_type] * n,
                              masks=masks, has_mask=has_mask, skipped=skipped))
    return ImageSet.concatenate(parts)


# --------------------------------------------------------------------------
# MNIST-format IDX files (one-class protocol).

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
        else gray * 2.0 - 1.0
    labels = (classes[keep] != normal_class).astype(np.int64)
    ids = [f"idx:{split}:{i}" for i in keep]
    types = [GOOD if c == normal_class else f"class_{c}" for c in classes[keep]]
    return ImageSet(model_input.astype(np.float32), ids, labels, types)


# --------------------------------------------------------------------------
# Source specs.

@dataclasses.dataclass(frozen=True)
class Source:
    kind: str  # "synthetic", "idx", "mvtec", "folder"
    path: str = ""
    normal_class: int = 0


_IDX_SPEC = re.compile(r"^idx:(?P<path>.+):(?P<cls>-?\d+)$")


def resolve_source(spec: Optional[str]) -> Source:
    """Parses a `--data_dir` value (see the module docstring).

    Raises:
      DataError: the folder does not exist or the IDX spec is malformed.
    """
    if spec is None or spec == "" or spec == "synthetic":
        return Source("synthetic")
    if spec.startswith("idx:"):
        match = _IDX_SPEC.match(spec)
        if not match:
            raise DataError(f"{spec}: expected an IDX spec of the form idx:FOLDER:CLASS")
        return Source("idx", match["path"], int(match["cls"]))
    if not os.path.exists(spec):
        raise DataError(f"{spec}: folder not found")
    if not os.path.isdir(spec):
        raise DataError(f"{spec}: expected a folder of images, found a file")
    return Source("mvtec" if is_mvtec_root(spec) else "folder", spec)


def load_training_set(spec: Optional[str], image_size: int, skip_corrupt: bool = False,
                      seed: int = 0, synthetic_count: int = 3277,
                      synthetic_package: str = "sop",
                      max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageSet:
    """The good images to train on for a source spec."""
    source = resolve_source(spec)
    if source.kind == "synthetic":
        from ic_anogan import synthetic  # deferred: only this source renders
        return synthetic.render_set("train", image_size, good=synthetic_count, seed=seed,
                                    package=synthetic_package)
    if source.kind == "idx":
        return load_idx(source.path, "train", source.normal_class, image_size, True)
    if source.kind == "mvtec":
        return load_mvtec_train(source.path, image_size, skip_corrupt, max_image_pixels)
    return load_folder(source.path, image_size, skip_corrupt, label=0, defect_type=GOOD,
                       max_image_pixels=max_image_pixels)


def load_scoring_set(spec: Optional[str], image_size: int, skip_corrupt: bool = False,
                     seed: int = 0, synthetic_counts: Optional[dict] = None,
                     synthetic_split: str = "test", synthetic_package: str = "sop",
                     max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageSet:
    """The images to score for a source spec, labelled where the source knows labels.

    `synthetic_split` = "validation" gives synthetic images of their own, for
    tuning without touching the test split.
    """
    source = resolve_source(spec)
    if source.kind == "synthetic":
        from ic_anogan import synthetic
        counts = synthetic_counts or synthetic.STUDY_TEST_COUNTS
        return synthetic.render_set(synthetic_split, image_size, seed=seed,
                                    package=synthetic_package, **counts)
    if source.kind == "idx":
        return load_idx(source.path, "test", source.normal_class, image_size, False)
    if source.kind == "mvtec":
        return load_mvtec_test(os.path.join(source.path, "test"), image_size, skip_corrupt,
                               os.path.join(source.path, "ground_truth"), max_image_pixels)
    subfolders = [d for d in os.listdir(source.path)
                  if os.path.isdir(os.path.join(source.path, d))]
    if GOOD in subfolders:  # a bare test/ root: labels from folder names
        return load_mvtec_test(source.path, image_size, skip_corrupt,
                               max_image_pixels=max_image_pixels)
    return load_folder(source.path, image_size, skip_corrupt, max_image_pixels=max_image_pixels)


def split_holdout(images: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Splits off a seeded random `fraction` (at least one image when fraction > 0).

    Returns:
      (train, held_out). The held-out images are never trained on; they serve
      validation and threshold calibration.
    """
    n = len(images)
    n_held = int(round(n * fraction))
    if fraction > 0:
        n_held = max(1, n_held)
    if n - n_held < 1:
        raise DataError(f"only {n} training images: nothing left after holding out "
                        f"{n_held} (validation_fraction={fraction})")
    order = np.random.default_rng(seed).permutation(n)
    held = np.sort(order[:n_held])
    train = np.sort(order[n_held:])
    return images.subset(train), images.subset(held)


def make_dataset(images: np.ndarray, batch_size: int, shuffle: bool = True,
                 seed: int = 0, drop_remainder: bool = True) -> tf.data.Dataset:
    """A `tf.data` pipeline over in-memory images: shuffle with a seed, batch, prefetch."""
    dataset = tf.data.Dataset.from_tensor_slices(images)
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)


def describe(images: ImageSet) -> str:
    """One line for logs: counts per defect type and skipped files."""
    counts: dict = {}
    for t in images.defect_types:
        counts[t or "unlabelled"] = counts.get(t or "unlabelled", 0) + 1
    text = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    if images.skipped:
        text += f"; skipped {len(images.skipped)} unreadable files"
    return f"{len(images)} images of {images.image_size}x{images.image_size} ({text})"

