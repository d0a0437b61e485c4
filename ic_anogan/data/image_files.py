"""Image files: decoding with limits, folders, and MVTec-AD-style roots.

Files are decoded once, in parallel threads, into memory (a 64x64 image takes
16 KiB, so a production line's good set fits). Decoding refuses what is not a
whole image before any long work starts, naming the file.
"""

from __future__ import annotations

import concurrent.futures
import os
import warnings
import zlib
from typing import Optional, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ic_anogan.config import DEFAULT_MAX_IMAGE_PIXELS
from ic_anogan.data.image_set import GOOD, UNKNOWN_LABEL, DataError, ImageSet
from ic_anogan.data.preprocessing import gray_from_decoded, gray_to_model

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# A JPEG this many times larger than the model on both sides is decoded at a
# reduced DCT scale (Pillow's draft), still at least DRAFT_MARGIN times the
# model's size, so the antialiased resize that follows sees enough pixels.
DRAFT_MARGIN = 4


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
                        f"of {max_pixels} pixels (data.max_image_pixels); a model needs far "
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
                        f"(data.max_image_pixels), refused before decoding ({e}). Raise the limit "
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
        return path, gray_to_model(gray, image_size), size, None

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
            masks[i] = (gray_to_model(mask, image_size) > 0.0).astype(np.float32)
            has_mask[i] = True
        label = 0 if defect_type == GOOD else 1
        parts.append(ImageSet(images, kept, np.full(n, label, np.int64), [defect_type] * n,
                              masks=masks, has_mask=has_mask, skipped=skipped))
    return ImageSet.concatenate(parts)
