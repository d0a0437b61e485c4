"""More than one scale: an anomaly map in which a large faint region can win.

The standardised map (anomaly_maps.py) is read pixel by pixel, and its
maximum judges the image. A void or a crack raises a few pixels far; a
frayed or unevenly shaded region raises many pixels a little and no pixel
much, so the maximum never sees it. Averaged over a wide window, those many
small excesses add up while the good parts' pixel noise averages away.

So with `MapConfig.area_scales` = J, the standardised map is also smoothed by
Gaussians of σ = 2^j pixels per 64 of the image's side (j = 1..J: 2, 4, 8 px
at 64 px). A wide window's values are smaller and steadier than a pixel's,
so each scale is put in units of how its maximum varies over good images:
(map_j − offset_j) / spread_j, offset and spread the mean and deviation of
the cross-fitted good images' maxima at scale j (map_calibration.py). The
combined map is the maximum over the scales, scale 0 (the map as it was)
included: what the fine scale catches stays caught, and a large faint region
wins at a coarse one. Its maximum is `map_max`; its argmax says where.

Graph code, used as it is in process and inside the SavedModel.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

# Scale j smooths with σ = 2^j · image_size / REFERENCE_SIZE pixels: scales follow
# the part, so a model at 32 px sees the same regions as one at 64 px.
REFERENCE_SIZE = 64
# A scale whose good maxima hardly vary still divides by at least this.
MIN_SPREAD = 1e-3


def sigmas(image_size: int, area_scales: int) -> list[float]:
    """σ in pixels of scales 1..area_scales at `image_size`."""
    return [2.0 ** j * image_size / REFERENCE_SIZE for j in range(1, area_scales + 1)]


def _line(sigma: float, radius: int) -> np.ndarray:
    axis = np.arange(-radius, radius + 1, dtype=np.float64)
    line = np.exp(-0.5 * (axis / sigma) ** 2)
    return (line / line.sum()).astype(np.float32)


def _blur(maps: tf.Tensor, sigma: float) -> tf.Tensor:
    """A separable Gaussian blur, reflect-padded (the border is not darkened)."""
    size = int(maps.shape[1])
    radius = min(int(math.ceil(3.0 * sigma)), size - 1)
    line = _line(sigma, radius)
    padded = tf.pad(maps, [[0, 0], [radius, radius], [0, 0], [0, 0]], mode="REFLECT")
    maps = tf.nn.conv2d(padded, tf.constant(line[:, None, None, None]), 1, "VALID")
    padded = tf.pad(maps, [[0, 0], [0, 0], [radius, radius], [0, 0]], mode="REFLECT")
    return tf.nn.conv2d(padded, tf.constant(line[None, :, None, None]), 1, "VALID")


def scale_stack(standardised: tf.Tensor, area_scales: int) -> tf.Tensor:
    """The standardised maps [N, S, S, 1] at scale 0 and smoothed at scales 1..J:
    [N, S, S, J + 1]."""
    standardised = tf.convert_to_tensor(standardised, tf.float32)
    size = int(standardised.shape[1])
    return tf.concat([standardised] + [_blur(standardised, sigma)
                                       for sigma in sigmas(size, area_scales)], axis=-1)


def _scales(standardised: tf.Tensor, area_scales: int, two_sided: bool) -> tf.Tensor:
    stack = scale_stack(standardised, area_scales)
    return tf.abs(stack) if two_sided else stack


def combine(stack: tf.Tensor, normalisation) -> tf.Tensor:
    """The maximum over scales of (map_j − offset_j) / spread_j: [N, S, S, 1].

    normalisation: [J + 1, 2] (offset, spread) per scale.
    """
    normalisation = tf.constant(np.asarray(normalisation, np.float32))
    offsets, spreads = normalisation[:, 0], normalisation[:, 1]
    return tf.reduce_max((stack - offsets) / spreads, axis=-1, keepdims=True)


def combined_map(standardised: tf.Tensor, area_scales: int, normalisation,
                 two_sided: bool = False) -> tf.Tensor:
    """`combine(scale_stack(...))`: the map a decision reads with area scales on.

    two_sided: the standardised map is signed (the `signed` residual); each scale
    is smoothed with its sign, then its absolute value counts.
    """
    return combine(_scales(standardised, area_scales, two_sided), normalisation)


def fit_normalisation(standardised: np.ndarray, area_scales: int, two_sided: bool = False,
                      batch_size: int = 256) -> np.ndarray:
    """(offset, spread) [J + 1, 2] per scale: the mean and deviation of good images'
    per-image maxima of their cross-fitted standardised maps [N, S, S, 1]."""
    maxima = []
    for begin in range(0, len(standardised), batch_size):
        stack = _scales(standardised[begin:begin + batch_size], area_scales, two_sided)
        maxima.append(tf.reduce_max(stack, axis=[1, 2]).numpy())
    maxima = np.concatenate(maxima).astype(np.float64)
    offsets = maxima.mean(axis=0)
    spreads = maxima.std(axis=0) if len(maxima) > 1 else np.abs(offsets)
    spreads = np.maximum(spreads, np.maximum(MIN_SPREAD * np.abs(offsets), MIN_SPREAD))
    return np.stack([offsets, spreads], axis=1).astype(np.float32)
