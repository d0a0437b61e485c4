"""From anomaly maps to decisions: smoothing, good-part statistics, map scores, masks.

The study's score A(x) sums the residual |x − G(z)| over the whole image. A
local defect (a void of a few pixels, a scratch) then competes with every
pixel's share of the way good parts vary: leads and marking that G draws a
little off, sensor noise, G's own blur. The maps show the defect; the sum
hides it. This module scores an image from where its residual is unusual:

1. Residual. |x − G(z)| (`absolute`), or the signed x − G(z) (`signed`),
   whose noise is zero-mean, so smoothing removes more of it.
2. Smoothing. A k×k box or Gaussian kernel (reflect-padded, so the border
   is not darkened): pixel noise averages out; a defect that spans a few
   pixels stays.
3. Standardising. Each pixel is expressed in units of how much good parts
   vary there: (m − μ_p)/σ_p, with μ_p, σ_p the mean and deviation of the
   good images' smoothed maps at that pixel (`signed`: the absolute value
   of that, so both dark and bright defects count). The places G always
   misses a little (leads, marking, edges) stop dominating.
4. Scores. `map_max`, the maximum of the standardised map, and `map_topk`,
   the mean of its top fraction; the argmax says where the defect is.
5. Mask. Pixels above a threshold (a high percentile of the good images'
   standardised pixels) form the defect mask.

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

The map functions are graph code, used as they are by the in-process scorer
and inside the SavedModel, so both compute the same numbers.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import math
from typing import Optional

import numpy as np
import tensorflow as tf

from ic_anogan import config as config_lib
from ic_anogan.config import MapConfig

log = logging.getLogger(__name__)

# Outputs added to a search's outputs by `map_outputs`.
MAP_OUTPUTS = ("map_max", "map_topk", "map_x", "map_y", "standardised_map", "defect_mask")


@dataclasses.dataclass(frozen=True)
class MapStatistics:
    """What good parts' anomaly maps look like, at the model's resolution.

    Attributes:
      mean, std: float32 [S, S], per pixel, after shrinkage and the floor.
      count: good images they rest on.
      pixel_threshold: standardised value above which a pixel is defective.
      config: the smoothing and standardisation they were computed with.
      reference_latents, reference_maps: with config.neighbours > 0, the
        calibration images' latents [M, latent_dim] and smoothed maps
        [M, S, S] that per-image statistics are drawn from; else None.
      deviation_floor: the smallest deviation a per-image statistic may have.
    """

    mean: np.ndarray
    std: np.ndarray
    count: int
    pixel_threshold: float
    config: MapConfig
    reference_latents: Optional[np.ndarray] = None
    reference_maps: Optional[np.ndarray] = None
    deviation_floor: float = 0.0

    def __post_init__(self):
        if self.config.neighbours and (self.reference_maps is None
                                       or self.reference_latents is None):
            raise ValueError(f"map statistics with neighbours={self.config.neighbours} need "
                             "the calibration images' latents and maps (anomaly_maps.calibrate "
                             "computes them); use neighbours=0 for one set of statistics")

    def to_dict(self) -> dict:
        values = {"config": config_lib.to_dict(self.config), "count": int(self.count),
                  "pixel_threshold": float(self.pixel_threshold),
                  # 7 significant digits: float32 round-trips through the JSON text.
                  "mean": np.round(self.mean.astype(np.float64), 7).tolist(),
                  "std": np.round(self.std.astype(np.float64), 7).tolist()}
        if self.reference_maps is not None:
            # Thousands of maps: raw float32 bytes, base64, a third of the text's size.
            values["references"] = {"latents": _encode(self.reference_latents),
                                    "maps": _encode(self.reference_maps),
                                    "deviation_floor": float(self.deviation_floor)}
        return values

    @staticmethod
    def from_dict(values: dict, image_size: Optional[int] = None) -> "MapStatistics":
        """Reads `to_dict`'s output, checking every field.

        Raises:
          ValueError: a field is missing, of the wrong shape (image_size x
            image_size when given), not finite, or out of range; the message
            names the field and the value.
        """
        if not isinstance(values, dict):
            raise ValueError(f"expected an object, got {type(values).__name__}")
        for key in ("mean", "std", "count", "pixel_threshold", "config"):
            if key not in values:
                raise ValueError(f"'{key}' is missing")
        try:
            mean = np.asarray(values["mean"], np.float32)
            std = np.asarray(values["std"], np.float32)
        except (TypeError, ValueError):
            raise ValueError("'mean' and 'std' must be arrays of numbers") from None
        if mean.ndim != 2 or mean.shape != std.shape or mean.shape[0] != mean.shape[1]:
            raise ValueError(f"'mean' and 'std': expected two equal square arrays, got "
                             f"{mean.shape} and {std.shape}")
        if image_size is not None and mean.shape != (image_size, image_size):
            raise ValueError(f"'mean' and 'std' are {mean.shape[0]}x{mean.shape[1]}; the model "
                             f"scores {image_size}x{image_size} images")
        if not np.all(np.isfinite(mean)):
            raise ValueError("'mean' holds NaN or infinite values")
        if not (np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError("'std' must be finite and positive everywhere")
        count, pixel_threshold = values["count"], values["pixel_threshold"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"'count' is {count!r}; expected a positive integer")
        if (isinstance(pixel_threshold, bool) or not isinstance(pixel_threshold, (int, float))
                or not math.isfinite(pixel_threshold)):
            raise ValueError(f"'pixel_threshold' is {pixel_threshold!r}; expected a finite "
                             "number")
        if not isinstance(values["config"], dict):
            raise ValueError("'config' must be an object")
        # A record written before a setting existed meant that setting's old behaviour.
        stored = {**config_lib.MAP_LEGACY_DEFAULTS, **values["config"]}
        config = config_lib.from_dict(MapConfig, stored)
        latents = maps = None
        floor = 0.0
        if config.neighbours:
            references = values.get("references")
            if not isinstance(references, dict):
                raise ValueError(f"'references' is missing: neighbours={config.neighbours} "
                                 "needs the calibration images' latents and maps")
            latents, maps = _decode(references.get("latents")), _decode(references.get("maps"))
            floor = references.get("deviation_floor")
            if (latents is None or maps is None or latents.ndim != 2 or maps.ndim != 3
                    or len(latents) != len(maps) or len(maps) == 0
                    or maps.shape[1:] != mean.shape):
                raise ValueError("'references' must hold M latents and M maps of "
                                 f"{mean.shape[0]}x{mean.shape[1]}")
            if not (np.all(np.isfinite(latents)) and np.all(np.isfinite(maps))):
                raise ValueError("'references' hold NaN or infinite values")
            if not (isinstance(floor, (int, float)) and math.isfinite(floor) and floor > 0):
                raise ValueError(f"'references.deviation_floor' is {floor!r}; expected a "
                                 "finite positive number")
        return MapStatistics(mean, std, count, float(pixel_threshold), config, latents, maps,
                             float(floor))


def _encode(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(array.shape), "float32_base64": base64.b64encode(
        array.tobytes()).decode("ascii")}


def _decode(values) -> Optional[np.ndarray]:
    """An `_encode`d array, or None when it is not one."""
    try:
        raw = base64.b64decode(values["float32_base64"], validate=True)
        return np.frombuffer(raw, "<f4").reshape(values["shape"]).astype(np.float32)
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None


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


def aligned_residual(images: tf.Tensor, reconstructions: tf.Tensor, tolerance: int,
                     signed: bool = False) -> tf.Tensor:
    """Per pixel, x − G(z) at the shift of G(z) (up to `tolerance` pixels each way) that
    makes it smallest in magnitude; its absolute value unless `signed`.

    G redraws an edge, a lead or a character of the marking a pixel off where
    the part sits a little differently; compared pixel by pixel that is a
    line of large residuals on every good part, and the standardised map
    learns to shrug at those places, defects there included. Compared with
    the best nearby pixel of G(z), an edge drawn a pixel off matches; a void
    or scratch has no such pixel nearby. Border pixels compare with G(z)
    mirrored at the border.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    reconstructions = tf.convert_to_tensor(reconstructions, tf.float32)
    if tolerance == 0:
        residual = images - reconstructions
        return residual if signed else tf.abs(residual)
    t = tolerance
    size = images.shape[1]
    padded = tf.pad(reconstructions, [[0, 0], [t, t], [t, t], [0, 0]], mode="SYMMETRIC")
    best = best_signed = None
    for dy in range(2 * t + 1):
        for dx in range(2 * t + 1):
            difference = images - padded[:, dy:dy + size, dx:dx + size, :]
            magnitude = tf.abs(difference)
            if best is None:
                best, best_signed = magnitude, difference
            else:
                closer = magnitude < best
                best = tf.where(closer, magnitude, best)
                if signed:
                    best_signed = tf.where(closer, difference, best_signed)
    return best_signed if signed else best


def smoothed_residual(images: tf.Tensor, reconstructions: tf.Tensor,
                      config: MapConfig) -> tf.Tensor:
    """The residual map of `config.residual` within `config.alignment_tolerance`,
    smoothed: [N, S, S, 1]."""
    residual = aligned_residual(images, reconstructions, config.alignment_tolerance,
                                signed=config.residual == "signed")
    if config.kernel_size == 1:
        return residual
    half = config.kernel_size // 2
    padded = tf.pad(residual, [[0, 0], [half, half], [half, half], [0, 0]], mode="REFLECT")
    return tf.nn.conv2d(padded, tf.constant(_kernel(config)), strides=1, padding="VALID")


def standardise(smoothed: tf.Tensor, mean, std, config: MapConfig) -> tf.Tensor:
    """(smoothed − mean) / std per pixel; two-sided (absolute) for the signed residual.

    mean, std: [S, S] for every image, or [N, S, S, 1] per image.
    """
    mean, std = tf.cast(mean, tf.float32), tf.cast(std, tf.float32)
    if mean.shape.rank == 2:
        mean = tf.reshape(mean, [1, *mean.shape, 1])
        std = tf.reshape(std, [1, *std.shape, 1])
    standardised = (smoothed - mean) / std
    return tf.abs(standardised) if config.residual == "signed" else standardised


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
                      latents: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Smoothed maps in units of how good parts vary: overall, or by each image's
    neighbours when the statistics were calibrated with config.neighbours > 0."""
    if statistics.config.neighbours:
        if latents is None:
            raise ValueError("map statistics with neighbours need the search's latents")
        mean, std = neighbour_statistics(latents, statistics)
        return standardise(smoothed, mean, std, statistics.config)
    return standardise(smoothed, statistics.mean, statistics.std, statistics.config)


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
    config = statistics.config
    standardised = standardised_maps(smoothed_residual(images, reconstructions, config),
                                     statistics, latents)
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


# Neighbour statistics keep at most this many calibration images (a seeded
# subset): enough for any look to have its kind, bounded in the export's size.
MAX_REFERENCE_IMAGES = 1024


def _statistics_of(smoothed: np.ndarray, latents: Optional[np.ndarray], config: MapConfig,
                   pixel_threshold: float, seed: int) -> MapStatistics:
    """Statistics of smoothed maps [N, S, S, 1], with references when config asks."""
    mean, std = estimate(smoothed, config)
    if not config.neighbours:
        return MapStatistics(mean, std, len(smoothed), pixel_threshold, config)
    keep = np.arange(len(smoothed))
    if len(keep) > MAX_REFERENCE_IMAGES:
        keep = np.sort(np.random.default_rng(seed).permutation(len(keep))[
            :MAX_REFERENCE_IMAGES])
    maps = np.asarray(smoothed, np.float64)[..., 0]
    floor = config.std_floor * math.sqrt(max(_wide_variance(maps), 1e-12))
    return MapStatistics(mean, std, len(smoothed), pixel_threshold, config,
                         np.asarray(latents, np.float32)[keep],
                         maps[keep].astype(np.float32), max(floor, 1e-6))


def calibrate(images: np.ndarray, reconstructions: np.ndarray, config: MapConfig,
              seed: int = 0, latents: Optional[np.ndarray] = None) -> MapCalibration:
    """Statistics, pixel threshold and cross-fitted good scores from good images.

    Args:
      images: good images the model never trained on, [N, S, S, 1] in [-1, 1].
      reconstructions: their G(z) after the search.
      config: smoothing and standardisation.
      seed: assigns images to folds.
      latents: their z after the search [N, latent_dim]; needed with
        config.neighbours > 0.
    """
    count = len(images)
    if count == 0:
        raise ValueError("map calibration needs at least one good image")
    if config.neighbours and (latents is None or len(latents) != count):
        raise ValueError("map statistics with neighbours need one latent per good image")
    smoothed = np.concatenate([smoothed_residual(images[b:b + 512], reconstructions[b:b + 512],
                                                 config).numpy()
                               for b in range(0, count, 512)])
    folds = min(config.folds, count)
    if folds < 2:
        log.warning("map statistics rest on one good image: no cross-fitting possible, the "
                    "thresholds are in-sample and too low; calibrate on more good images")
        assignment = np.zeros(count, np.int64)
        folds = 1
    else:
        assignment = np.random.default_rng(seed).permutation(count) % folds
    scores = {name: np.zeros(count, np.float64) for name in config_lib.MAP_SCORES}
    pixels = []
    for fold in range(folds):
        inside = assignment == fold
        rest = ~inside if folds > 1 else inside
        fold_statistics = _statistics_of(smoothed[rest], None if latents is None
                                         else latents[rest], config, 0.0, seed)
        standardised = np.concatenate([standardised_maps(
            tf.constant(part), fold_statistics,
            None if latents is None else latents[inside][b:b + 128]).numpy()
            for b, part in ((b, smoothed[inside][b:b + 128])
                            for b in range(0, int(inside.sum()), 128))])
        for name, values in map_scores(tf.constant(standardised), config).items():
            if name in scores:
                scores[name][inside] = values.numpy()
        pixels.append(standardised.ravel())
    pixel_threshold = float(np.percentile(np.concatenate(pixels), config.pixel_percentile))
    statistics = _statistics_of(smoothed, latents, config, pixel_threshold, seed)
    return MapCalibration(statistics, scores)


def describe(statistics: MapStatistics) -> str:
    """One line for the log: what the statistics rest on."""
    c = statistics.config
    tolerance = (f" within {c.alignment_tolerance} px" if c.alignment_tolerance else "")
    neighbours = (f", per image from its {c.neighbours} nearest of "
                  f"{len(statistics.reference_maps)} good images"
                  if c.neighbours and statistics.reference_maps is not None else "")
    return (f"map statistics on {statistics.count} good images ({c.residual} residual"
            f"{tolerance}, {c.kernel} {c.kernel_size}x{c.kernel_size} smoothing{neighbours}, "
            "shrunk toward the "
            f"image-wide values with the weight of {c.prior_images:g} images; pixel threshold "
            f"{statistics.pixel_threshold:.3f} = {c.pixel_percentile:g}th percentile of good "
            "standardised pixels)"
            + ("; few images: the per-pixel statistics lean on the image-wide ones"
               if statistics.count < 4 * c.prior_images else ""))
