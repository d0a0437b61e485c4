"""From anomaly maps to decisions: smoothing, good-part statistics, map scores, masks.

The study's score A(x) sums the residual |x − G(z)| over the whole image. A
local defect (a void of a few pixels, a scratch) then competes with every
pixel's share of the way good parts vary: leads and marking that G draws a
little off, sensor noise, G's own blur. The maps show the defect; the sum
hides it. This module scores an image from where its residual is unusual:

1. Residual. |x − G(z)| (`absolute`), the signed x − G(z) (`signed`),
   whose noise is zero-mean, so smoothing removes more of it, or a
   comparison of structure (`gradient`, `ssim`; comparisons.py).
2. Smoothing. A k×k box or Gaussian kernel (reflect-padded, so the border
   is not darkened): pixel noise averages out; a defect that spans a few
   pixels stays.
3. Standardising. Each pixel is expressed in units of how much good parts
   vary there: (m − μ_p)/σ_p, with μ_p, σ_p the mean and deviation of the
   good images' smoothed maps at that pixel (`signed`: the absolute value
   of that, so both dark and bright defects count). The places G always
   misses a little (leads, marking, edges) stop dominating.
4. Scales. With area scales, the maximum over the map smoothed at several
   scales, each in units of how good images' maxima vary there
   (area_scales.py): large faint regions count.
5. Scores. `map_max`, the maximum of the standardised map, and `map_topk`,
   the mean of its top fraction; the argmax says where the defect is.
6. Mask. Pixels above a threshold (a high percentile of the good images'
   standardised pixels) form the defect mask.

The statistics are map_statistics.py's, learnt by map_calibration.py.

The map functions are graph code, used as they are by the in-process scorer
and inside the SavedModel, so both compute the same numbers.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from ic_anogan.config import MapConfig
from ic_anogan.scoring import area_scales
from ic_anogan.scoring.comparisons import aligned_comparison
from ic_anogan.scoring.map_statistics import MapStatistics

# Outputs added to a search's outputs by `map_outputs`.
MAP_OUTPUTS = ("map_max", "map_topk", "map_x", "map_y", "standardised_map", "defect_mask")


# -- graph code ---------------------------------------------------------------

def _kernel(config: MapConfig) -> np.ndarray:
    size = config.kernel_size
    if config.kernel == "box":
        weights = np.ones((size, size))
    else:
        sigma = size / 4.0
        axis = np.arange(size) - (size - 1) / 2.0
        line = np.exp(-0.5 * (axis / sigma) ** 2)
        weights = np.outer(line, line)
    return (weights / weights.sum()).astype(np.float32)[:, :, None, None]


def smoothed_residual(images: tf.Tensor, reconstructions: tf.Tensor,
                      config: MapConfig) -> tf.Tensor:
    """The residual map of `config.residual` (comparisons.py) within the alignment
    tolerance in force (`config.tolerance_for` the image size), smoothed: [N, S, S, 1]."""
    residual = aligned_comparison(images, reconstructions,
                                  config.tolerance_for(int(images.shape[1])), config.residual)
    if config.kernel_size == 1:
        return residual
    half = config.kernel_size // 2
    padded = tf.pad(residual, [[0, 0], [half, half], [half, half], [0, 0]], mode="REFLECT")
    return tf.nn.conv2d(padded, tf.constant(_kernel(config)), strides=1, padding="VALID")


def standardise(smoothed: tf.Tensor, mean, std, config: MapConfig,
                keep_sign: bool = False) -> tf.Tensor:
    """(smoothed − mean) / std per pixel; two-sided (absolute) for the signed residual
    unless `keep_sign` (area scales smooth the signed values first: area_scales.py).

    mean, std: [S, S] for every image, or [N, S, S, 1] per image.
    """
    mean, std = tf.cast(mean, tf.float32), tf.cast(std, tf.float32)
    if mean.shape.rank == 2:
        mean = tf.reshape(mean, [1, *mean.shape, 1])
        std = tf.reshape(std, [1, *std.shape, 1])
    standardised = (smoothed - mean) / std
    return tf.abs(standardised) if config.two_sided and not keep_sign else standardised


def neighbour_statistics(latents: tf.Tensor, statistics: MapStatistics) -> tuple:
    """Per image, the mean and deviation [N, S, S, 1] of the smoothed maps of its
    config.neighbours nearest reference images in latent space, shrunk toward the
    overall statistics with the weight of config.prior_images images.

    Good parts come in looks (two package types, two suppliers, before and after a
    changeover); one set of statistics mixes them, and where the looks differ the
    deviation grows and defects drown. The latent the search found says which look
    a part has, so its own kind's maps judge it. Each row depends on its own latent
    only (distances and means are element-wise reductions), so a score does not
    depend on the batch.
    """
    config = statistics.config
    # numpy arrays in process; variables shared by every signature in an export.
    references = tf.cast(statistics.reference_latents, tf.float32)
    count, size = int(statistics.reference_maps.shape[0]), int(statistics.reference_maps.shape[1])
    maps = tf.reshape(tf.cast(statistics.reference_maps, tf.float32), [count, size * size])
    k = min(config.neighbours, count)
    latents = tf.convert_to_tensor(latents, tf.float32)
    distances = tf.reduce_sum(tf.square(latents[:, None, :] - references[None]), axis=-1)
    nearest = tf.math.top_k(-distances, k=k, sorted=False).indices
    near = tf.gather(maps, nearest)  # [N, k, S·S]
    local_mean = tf.reduce_mean(near, axis=1)
    local_variance = tf.reduce_mean(tf.square(near - local_mean[:, None]), axis=1)
    prior = float(config.prior_images)
    overall_mean = tf.constant(statistics.mean.reshape(1, -1), tf.float32)
    overall_variance = tf.constant(np.square(statistics.std).reshape(1, -1), tf.float32)
    mean = (k * local_mean + prior * overall_mean) / (k + prior)
    variance = (k * local_variance + prior * overall_variance) / (k + prior)
    std = tf.maximum(tf.sqrt(variance), max(statistics.deviation_floor, 1e-6))
    shape = [-1, size, size, 1]
    return tf.reshape(mean, shape), tf.reshape(std, shape)


def standardised_maps(smoothed: tf.Tensor, statistics: MapStatistics,
                      latents: Optional[tf.Tensor] = None, keep_sign: bool = False) -> tf.Tensor:
    """Smoothed maps in units of how good parts vary: overall, or by each image's
    neighbours when the statistics were calibrated with config.neighbours > 0."""
    if statistics.config.neighbours:
        if latents is None:
            raise ValueError("map statistics with neighbours need the search's latents")
        mean, std = neighbour_statistics(latents, statistics)
        return standardise(smoothed, mean, std, statistics.config, keep_sign)
    return standardise(smoothed, statistics.mean, statistics.std, statistics.config, keep_sign)


def top_count(image_size: int, top_fraction: float) -> int:
    """How many pixels `map_topk` averages."""
    return max(1, int(round(top_fraction * image_size * image_size)))


def map_scores(standardised: tf.Tensor, config: MapConfig) -> dict:
    """map_max, map_topk [N] and the maximum's map_x, map_y (int32 [N]) of standardised maps."""
    size = standardised.shape[1]
    flat = tf.reshape(standardised, [tf.shape(standardised)[0], size * size])
    where = tf.argmax(flat, axis=1, output_type=tf.int32)
    top = tf.math.top_k(flat, k=top_count(size, config.top_fraction), sorted=False).values
    return {"map_max": tf.reduce_max(flat, axis=1), "map_topk": tf.reduce_mean(top, axis=1),
            "map_x": where % size, "map_y": where // size}


def map_outputs(images: tf.Tensor, reconstructions: tf.Tensor,
                statistics: MapStatistics, latents: Optional[tf.Tensor] = None) -> dict:
    """Everything the maps add to a search's outputs (MAP_OUTPUTS), as graph code.

    Args:
      images: float32 [N, S, S, 1] in [-1, 1].
      reconstructions: G(z) at the search's z, same shape (unrounded).
      statistics: the good parts' statistics of this scoring mode.
      latents: the search's z [N, latent_dim]; needed when the statistics
        follow each image's neighbours.
    """
    return outputs_from_smoothed(smoothed_residual(images, reconstructions, statistics.config),
                                 statistics, latents)


def outputs_from_smoothed(smoothed: tf.Tensor, statistics: MapStatistics,
                          latents: Optional[tf.Tensor] = None) -> dict:
    """`map_outputs` from smoothed residual maps [N, S, S, 1] already computed."""
    config = statistics.config
    if config.area_scales:
        # A signed residual keeps its sign until each scale is smoothed: the grain G
        # cannot redraw averages away, a region shaded lighter or darker does not.
        standardised = area_scales.combined_map(
            standardised_maps(smoothed, statistics, latents, keep_sign=True),
            config.area_scales, statistics.area_normalisation,
            two_sided=config.two_sided)
    else:
        standardised = standardised_maps(smoothed, statistics, latents)
    outputs = map_scores(standardised, config)
    outputs["standardised_map"] = standardised
    outputs["defect_mask"] = tf.cast(standardised > statistics.pixel_threshold, tf.uint8)
    return outputs


def score_maps(images: np.ndarray, reconstructions: np.ndarray, statistics: MapStatistics,
               batch_size: int = 128, latents: Optional[np.ndarray] = None) -> dict:
    """`map_outputs` as numpy, in batches (memory stays flat on large sets)."""
    parts = []
    for begin in range(0, len(images), batch_size):
        end = begin + batch_size
        parts.append({k: v.numpy() for k, v in map_outputs(
            images[begin:end], reconstructions[begin:end], statistics,
            None if latents is None else latents[begin:end]).items()})
    if not parts:
        size = statistics.mean.shape[0]
        return {"map_max": np.zeros([0], np.float32), "map_topk": np.zeros([0], np.float32),
                "map_x": np.zeros([0], np.int32), "map_y": np.zeros([0], np.int32),
                "standardised_map": np.zeros([0, size, size, 1], np.float32),
                "defect_mask": np.zeros([0, size, size, 1], np.uint8)}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# -- statistics from good images ------------------------------------------------

