"""Image sources by spec, the hold-out split, and the training `tf.data` pipeline.

Every source yields an `ImageSet` (image_set.py): images at the model's size
in [-1, 1], with an id per image (its path, or a synthetic / IDX index),
labels where known and pixel masks where present. `training_stream` turns
them into an endless, reshuffled, batched, prefetching `tf.data` pipeline.

Source specs (sources.py, `DataConfig.data_dir`):
  * None or "synthetic": the built-in synthetic IC generator (synthetic.py).
  * "idx:DIR:K": MNIST-format IDX files in DIR, class K normal (idx_files.py).
  * a folder with `train/good/` or `test/`: an MVTec-AD-style root (image_files.py).
  * any other folder: its images, searched recursively (labels unknown).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from ic_anogan.config import DataConfig
from ic_anogan.data import idx_files, image_files, synthetic
from ic_anogan.data.image_set import GOOD, DataError, ImageSet
from ic_anogan.data.sources import resolve_source


def load_training_set(data_config: DataConfig, image_size: int, seed: int = 0) -> ImageSet:
    """The good images to train on."""
    source = resolve_source(data_config.data_dir)
    if source.kind == "synthetic":
        return synthetic.render_set("train", image_size, good=data_config.synthetic_train_count,
                                    seed=seed, package=data_config.package)
    if source.kind == "idx":
        return idx_files.load_idx(source.path, "train", source.normal_class, image_size, True)
    if source.kind == "mvtec":
        return image_files.load_mvtec_train(source.path, image_size, data_config.skip_corrupt,
                                            data_config.max_image_pixels)
    return image_files.load_folder(source.path, image_size, data_config.skip_corrupt, label=0,
                                   defect_type=GOOD,
                                   max_image_pixels=data_config.max_image_pixels)


# Fewer good images than this cannot set a threshold by recalibration: the
# 99th percentile of nine scores is their maximum, whatever the line's parts do.
MIN_CALIBRATION_IMAGES = 10


def load_calibration_set(data_config: DataConfig, image_size: int) -> tuple[ImageSet, str]:
    """Good images to calibrate on, and a sentence saying which were used.

    A folder with a `good/` sub-folder (a labelled test root) gives only
    `good/`: its defect folders must never set a threshold. An MVTec-style
    root is refused, since its train/good/ is what the model trained on.

    Raises:
      DataError: an MVTec root, or fewer than MIN_CALIBRATION_IMAGES images.
    """
    source = resolve_source(data_config.data_dir)
    if source.kind in ("synthetic", "idx"):
        raise DataError(f"{data_config.data_dir}: expected a folder of good images")
    if source.kind == "mvtec":
        raise DataError(f"{source.path}: an MVTec-style root, whose train/good/ the model "
                        "trained on; give a folder of good images it never saw, such as "
                        f"{os.path.join(source.path, 'test')} (its good/ is used)")
    folder, left_out = source.path, []
    subfolders = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    if GOOD in subfolders:
        left_out = [d for d in subfolders if d != GOOD]
        folder = os.path.join(folder, GOOD)
    images = image_files.load_folder(folder, image_size, data_config.skip_corrupt, label=0,
                                     defect_type=GOOD,
                                     max_image_pixels=data_config.max_image_pixels)
    used = f"the {len(images)} images of {folder}"
    if left_out:
        used += f" (labelled root: the folders {', '.join(left_out)} were left out)"
    if len(images) < MIN_CALIBRATION_IMAGES:
        raise DataError(f"{data_config.data_dir}: {used}; calibration needs at least "
                        f"{MIN_CALIBRATION_IMAGES} good images the model never trained on "
                        "(the 99th percentile of fewer scores is their maximum)")
    return images, used


def load_scoring_set(data_config: DataConfig, image_size: int, seed: int = 0) -> ImageSet:
    """The images to score, labelled where the source knows labels.

    The synthetic split `data_config.synthetic_split` = "validation" has
    images of its own, for tuning without touching the test split.
    """
    source = resolve_source(data_config.data_dir)
    skip, limit = data_config.skip_corrupt, data_config.max_image_pixels
    if source.kind == "synthetic":
        return synthetic.render_set(data_config.synthetic_split, image_size, seed=seed,
                                    package=data_config.package,
                                    **data_config.synthetic_test_counts)
    if source.kind == "idx":
        return idx_files.load_idx(source.path, "test", source.normal_class, image_size, False)
    if source.kind == "mvtec":
        return image_files.load_mvtec_test(os.path.join(source.path, "test"), image_size, skip,
                                           os.path.join(source.path, "ground_truth"), limit)
    subfolders = [d for d in os.listdir(source.path)
                  if os.path.isdir(os.path.join(source.path, d))]
    if GOOD in subfolders:  # a bare test/ root: labels from folder names
        return image_files.load_mvtec_test(source.path, image_size, skip, max_image_pixels=limit)
    return image_files.load_folder(source.path, image_size, skip, max_image_pixels=limit)


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


def make_dataset(images: np.ndarray, batch_size: int, drop_remainder: bool = False
                 ) -> tf.data.Dataset:
    """One pass over in-memory images in order, batched and prefetched (validation)."""
    dataset = tf.data.Dataset.from_tensor_slices(images)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def training_stream(images: np.ndarray, batch_size: int, seed: int,
                    start_batch: int = 0) -> tf.data.Dataset:
    """Endless batches of `images`, reshuffled every pass, from batch `start_batch` on.

    Pass p is the stateless permutation of seed (seed, p), so batch k is a
    function of the seed and k alone: not of how many iterators were made
    (Keras makes one to build a model under a strategy), of a restart (a
    resumed run reads on from where it stopped, as if never stopped), or of
    how many workers share each batch (distribution.sharded).
    """
    count = len(images)
    first_pass, offset = divmod(start_batch * batch_size, count)
    seed_part = tf.constant(seed, tf.int64)
    order = tf.data.Dataset.range(first_pass, np.iinfo(np.int64).max).map(
        lambda p: tf.random.experimental.stateless_shuffle(
            tf.range(count, dtype=tf.int64), seed=tf.stack([seed_part, p])))
    pixels = tf.constant(images)
    batches = order.unbatch().skip(offset).batch(batch_size, drop_remainder=True)
    return batches.map(lambda rows: tf.gather(pixels, rows)).prefetch(tf.data.AUTOTUNE)
