"""Differentiable augmentation of what D sees (DiffAugment, Zhao et al. 2020).

With a few hundred good images, D learns them by heart within a few hundred
updates; its gradients then tell G nothing useful and G collapses to an
average part. DiffAugment applies the same random, differentiable transforms
to the real batch and to the generated batch before D scores them, both in
D's step and in G's, so D must judge parts rather than recall images, and G
still learns the un-augmented distribution (the transforms are applied to
its output, not learnt by it).

The policy is the paper's for small data, minus colour (the images are
grayscale and a brightness change is what a real defect may look like):
  - translation: shift by up to 1/8 of the side, zero-filled (zero is mid
    gray in [-1, 1]);
  - cutout: a square of half the side set to zero at a random place.
Both are gathers and multiplications by constant masks, so gradients flow
to G's pixels. Scoring never calls this: the search sees plain images.
"""

from __future__ import annotations

import keras
import tensorflow as tf

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _per_image_draws(images: tf.Tensor, low: int, high: int,
                     seed_generator: keras.random.SeedGenerator) -> tuple:
    """A (row, column) integer in [low, high) per image, shaped [2, N, 1], and the
    pixel positions [1, S] to compare them with."""
    draws = keras.random.randint((2, tf.shape(images)[0], 1), low, high, seed=seed_generator,
                                 dtype="int32")
    return draws, tf.range(images.shape[1], dtype=tf.int32)[None, :]


def translate(images: tf.Tensor, seed_generator: keras.random.SeedGenerator,
              ratio: float = TRANSLATION_RATIO) -> tf.Tensor:
    """Shifts each image by its own random offset in [-ratio·S, ratio·S], zero-filled."""
    size = images.shape[1]
    shift = int(size * ratio + 0.5)
    if shift == 0:
        return images
    offsets, positions = _per_image_draws(images, -shift, shift + 1, seed_generator)
    # Indices into the image padded by one zero row/column on each side:
    # a source position off the image reads the padding.
    rows = tf.clip_by_value(positions + offsets[0] + 1, 0, size + 1)
    cols = tf.clip_by_value(positions + offsets[1] + 1, 0, size + 1)
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(shifted, cols, axis=2, batch_dims=1)


def cutout(images: tf.Tensor, seed_generator: keras.random.SeedGenerator,
           ratio: float = CUTOUT_RATIO) -> tf.Tensor:
    """Sets one random square of side ratio·S per image to zero."""
    size = images.shape[1]
    side = int(size * ratio + 0.5)
    if side == 0:
        return images
    centres, positions = _per_image_draws(images, 0, size + (1 - side % 2), seed_generator)
    starts = centres - side // 2
    inside_rows = (positions >= starts[0]) & (positions < starts[0] + side)
    inside_cols = (positions >= starts[1]) & (positions < starts[1] + side)
    hole = tf.logical_and(inside_rows[:, :, None], inside_cols[:, None, :])
    return images * tf.cast(tf.logical_not(hole), images.dtype)[..., None]


def diff_augment(images: tf.Tensor, seed_generator: keras.random.SeedGenerator) -> tf.Tensor:
    """Translation, then cutout: the transform D's inputs get when augmentation is on."""
    return cutout(translate(images, seed_generator), seed_generator)
