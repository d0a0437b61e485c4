"""Map statistics from good images, cross-fitted so thresholds see unseen-image scores.

Statistics from few images are noisy: a pixel that happened to vary little
in 40 good images would flag every later part. So each pixel's mean and
variance are shrunk toward the image-wide values with the weight of
`prior_images` images, and the deviation is floored at a fraction of the
image-wide one.

Thresholds are percentiles of good images' scores, and a good image scored
with statistics that include itself looks better than an unseen one would:
at 300 images its maximum is already biased low. Calibration therefore
cross-fits: the good images are split into folds, each fold is scored with
statistics from the others, and the thresholds are percentiles of those
scores. The statistics stored with the model use every image.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Optional

import numpy as np
import tensorflow as tf

from ic_anogan import config as config_lib
from ic_anogan.config import MapConfig
from ic_anogan.scoring import area_scales
from ic_anogan.scoring.anomaly_maps import map_scores, smoothed_residual, standardised_maps
from ic_anogan.scoring.map_statistics import MapStatistics

log = logging.getLogger(__name__)


def _wide_variance(maps: np.ndarray) -> float:
    """The mean within-pixel variance of maps [N, S, S]; with one image there is none to
    pool, and the spread over the image is then the only honest guess."""
    return float(maps.var(axis=0).mean()) if len(maps) > 1 else float(maps.var())


def estimate(smoothed: np.ndarray, config: MapConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel (mean, std) [S, S] of good images' smoothed maps [N, S, S(, 1)].

    Each pixel's mean and variance are shrunk toward the image-wide mean and
    the mean within-pixel variance, with the weight of `config.prior_images`
    images; the deviation is then floored at `config.std_floor` times the
    image-wide deviation.
    """
    maps = np.asarray(smoothed, np.float64).reshape(len(smoothed), *np.shape(smoothed)[1:3])
    count = len(maps)
    if count == 0:
        raise ValueError("map statistics need at least one good image")
    pixel_mean = maps.mean(axis=0)
    pixel_variance = maps.var(axis=0)
    wide_mean = float(pixel_mean.mean())
    wide_variance = max(_wide_variance(maps), 1e-12)
    prior = config.prior_images
    mean = (count * pixel_mean + prior * wide_mean) / (count + prior)
    variance = (count * pixel_variance + prior * wide_variance) / (count + prior)
    std = np.maximum(np.sqrt(variance), config.std_floor * np.sqrt(wide_variance))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


@dataclasses.dataclass
class MapCalibration:
    """What calibration learns from good images' maps."""

    statistics: MapStatistics
    # Cross-fitted scores of the good images, per map score name: what unseen
    # good parts score, for the thresholds.
    good_scores: dict
    # The data-dependent settings in force and why: MapConfig.resolve's reasons.
    resolution: dict = dataclasses.field(default_factory=dict)


# Neighbour statistics keep at most this many calibration images (a seeded
# subset): enough for any look to have its kind, bounded in the export's size.
MAX_REFERENCE_IMAGES = 1024


def _statistics_of(smoothed: np.ndarray, latents: Optional[np.ndarray], config: MapConfig,
                   pixel_threshold: float, seed: int,
                   normalisation: Optional[np.ndarray] = None) -> MapStatistics:
    """Statistics of smoothed maps [N, S, S, 1], with references when config asks."""
    mean, std = estimate(smoothed, config)
    if not config.neighbours:
        return MapStatistics(mean, std, len(smoothed), pixel_threshold, config,
                             area_normalisation=normalisation)
    keep = np.arange(len(smoothed))
    if len(keep) > MAX_REFERENCE_IMAGES:
        keep = np.sort(np.random.default_rng(seed).permutation(len(keep))[
            :MAX_REFERENCE_IMAGES])
    maps = np.asarray(smoothed, np.float64)[..., 0]
    floor = config.std_floor * math.sqrt(max(_wide_variance(maps), 1e-12))
    return MapStatistics(mean, std, len(smoothed), pixel_threshold, config,
                         np.asarray(latents, np.float32)[keep],
                         maps[keep].astype(np.float32), max(floor, 1e-6), normalisation)


def calibrate(images: np.ndarray, reconstructions: np.ndarray, config: MapConfig,
              seed: int = 0, latents: Optional[np.ndarray] = None) -> MapCalibration:
    """Statistics, pixel threshold and cross-fitted good scores from good images.

    Args:
      images: good images the model never trained on, [N, S, S, 1] in [-1, 1].
      reconstructions: their G(z) after the search.
      config: smoothing and standardisation; settings left None are resolved
        from the image size and the number of images (MapConfig.resolve).
      seed: assigns images to folds.
      latents: their z after the search [N, latent_dim]; needed with
        config.neighbours > 0.
    """
    count = len(images)
    if count == 0:
        raise ValueError("map calibration needs at least one good image")
    config, resolution = config.resolve(int(np.shape(images)[1]), count)
    for field, why in resolution.items():
        if why["given"] and why["reason"] != "given":
            log.warning("map %s: %s", field, why["reason"])
    if config.neighbours and (latents is None or len(latents) != count):
        raise ValueError("map statistics with neighbours need one latent per good image")
    smoothed = np.concatenate([smoothed_residual(images[b:b + 512], reconstructions[b:b + 512],
                                                 config).numpy()
                               for b in range(0, count, 512)])
    return calibrate_smoothed(smoothed, config, resolution, seed, latents)


def calibrate_smoothed(smoothed: np.ndarray, config: MapConfig, resolution: dict,
                       seed: int = 0, latents: Optional[np.ndarray] = None) -> MapCalibration:
    """`calibrate` from good images' smoothed residual maps [N, S, S, 1], with `config`
    already resolved (MapConfig.resolve, whose reasons are `resolution`)."""
    count = len(smoothed)
    folds = min(config.folds, count)
    if folds < 2:
        log.warning("map statistics rest on one good image: no cross-fitting possible, the "
                    "thresholds are in-sample and too low; calibrate on more good images")
        assignment = np.zeros(count, np.int64)
        folds = 1
    else:
        assignment = np.random.default_rng(seed).permutation(count) % folds
    # Each image's map standardised by statistics of the folds it is not in (one
    # scale: the scales' normalisation is learnt from these maps below).
    crossfit = np.zeros_like(smoothed, dtype=np.float32)
    one_scale = dataclasses.replace(config, area_scales=0)
    for fold in range(folds):
        inside = assignment == fold
        rest = ~inside if folds > 1 else inside
        fold_statistics = _statistics_of(smoothed[rest], None if latents is None
                                         else latents[rest], one_scale, 0.0, seed)
        crossfit[inside] = np.concatenate([standardised_maps(
            tf.constant(part), fold_statistics,
            None if latents is None else latents[inside][b:b + 128],
            keep_sign=bool(config.area_scales)).numpy()
            for b, part in ((b, smoothed[inside][b:b + 128])
                            for b in range(0, int(inside.sum()), 128))])
    normalisation = None
    if config.area_scales:
        normalisation = area_scales.fit_normalisation(crossfit, config.area_scales,
                                                      config.two_sided)
        crossfit = np.concatenate([area_scales.combined_map(
            crossfit[b:b + 256], config.area_scales, normalisation, config.two_sided).numpy()
            for b in range(0, count, 256)])
    scores = {name: np.zeros(count, np.float64) for name in config_lib.MAP_SCORES}
    for begin in range(0, count, 256):
        for name, values in map_scores(tf.constant(crossfit[begin:begin + 256]),
                                       config).items():
            if name in scores:
                scores[name][begin:begin + 256] = values.numpy()
    pixel_threshold = float(np.percentile(crossfit.ravel(), config.pixel_percentile))
    statistics = _statistics_of(smoothed, latents, config, pixel_threshold, seed, normalisation)
    return MapCalibration(statistics, scores, resolution)
