"""`MapStatistics`: the good parts' per-pixel map statistics, stored and checked.

What calibration learns from good images (map_calibration.py) and every
scorer standardises with (anomaly_maps.py): the per-pixel mean and deviation
of the smoothed maps, the defect-mask threshold, and, for neighbour
statistics, the reference images' latents and maps. It round-trips through
calibration.json and the export, and a damaged record is refused field by
field when it is read.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
from typing import Optional

import numpy as np

from ic_anogan import config as config_lib
from ic_anogan.config import MapConfig


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
      area_normalisation: with config.area_scales = J > 0, (offset, spread)
        [J + 1, 2] per scale (area_scales.py); else None.
    """

    mean: np.ndarray
    std: np.ndarray
    count: int
    pixel_threshold: float
    config: MapConfig
    reference_latents: Optional[np.ndarray] = None
    reference_maps: Optional[np.ndarray] = None
    deviation_floor: float = 0.0
    area_normalisation: Optional[np.ndarray] = None

    def __post_init__(self):
        if not self.config.resolved:
            raise ValueError("map statistics need every map setting in force (alignment_"
                             f"tolerance={self.config.alignment_tolerance}, neighbours="
                             f"{self.config.neighbours}); MapConfig.resolve gives them")
        if self.config.neighbours and (self.reference_maps is None
                                       or self.reference_latents is None):
            raise ValueError(f"map statistics with neighbours={self.config.neighbours} need "
                             "the calibration images' latents and maps (map_calibration.calibrate "
                             "computes them); use neighbours=0 for one set of statistics")
        if self.config.area_scales and (self.area_normalisation is None or np.shape(
                self.area_normalisation) != (self.config.area_scales + 1, 2)):
            raise ValueError(f"map statistics with area_scales={self.config.area_scales} need "
                             f"an offset and a spread for each of {self.config.area_scales + 1}"
                             " scales (map_calibration.calibrate computes them)")

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
        if self.area_normalisation is not None:
            values["area_normalisation"] = np.round(
                np.asarray(self.area_normalisation, np.float64), 7).tolist()
        return values

    @staticmethod
    def from_dict(values: dict, image_size: Optional[int] = None,
                  latent_dim: Optional[int] = None) -> "MapStatistics":
        """Reads `to_dict`'s output, checking every field.

        Raises:
          ValueError: a field is missing, of the wrong shape (image_size x
            image_size, and reference latents of latent_dim, when given), not
            finite, or out of range; the message names the field and the value.
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
            if latent_dim is not None and latents.shape[1] != latent_dim:
                raise ValueError(f"'references' hold latents of {latents.shape[1]} numbers; "
                                 f"the model's z has {latent_dim}")
            if not (np.all(np.isfinite(latents)) and np.all(np.isfinite(maps))):
                raise ValueError("'references' hold NaN or infinite values")
            if not (isinstance(floor, (int, float)) and math.isfinite(floor) and floor > 0):
                raise ValueError(f"'references.deviation_floor' is {floor!r}; expected a "
                                 "finite positive number")
        normalisation = None
        if config.area_scales:
            normalisation = _area_normalisation(values.get("area_normalisation"),
                                                config.area_scales)
        return MapStatistics(mean, std, count, float(pixel_threshold), config, latents, maps,
                             float(floor), normalisation)


def _area_normalisation(values, area_scales: int) -> np.ndarray:
    """A stored (offset, spread) per scale, checked."""
    try:
        array = np.asarray(values, np.float32)
    except (TypeError, ValueError):
        array = None
    if array is None or array.shape != (area_scales + 1, 2):
        raise ValueError(f"'area_normalisation' must hold an offset and a spread for each of "
                         f"the {area_scales + 1} scales of area_scales={area_scales}")
    if not (np.all(np.isfinite(array)) and np.all(array[:, 1] > 0)):
        raise ValueError("'area_normalisation' must be finite, with positive spreads")
    return array


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


def describe(statistics: MapStatistics) -> str:
    """One line for the log: what the statistics rest on."""
    c = statistics.config
    tolerance = (f" within {c.alignment_tolerance} px" if c.alignment_tolerance else "")
    neighbours = (f", per image from its {c.neighbours} nearest of "
                  f"{len(statistics.reference_maps)} good images"
                  if c.neighbours and statistics.reference_maps is not None else "")
    scales = (f", the maximum over {c.area_scales + 1} scales" if c.area_scales else "")
    return (f"map statistics on {statistics.count} good images ({c.residual} residual"
            f"{tolerance}{scales}, {c.kernel} {c.kernel_size}x{c.kernel_size} smoothing"
            f"{neighbours}, shrunk toward the "
            f"image-wide values with the weight of {c.prior_images:g} images; pixel threshold "
            f"{statistics.pixel_threshold:.3f} = {c.pixel_percentile:g}th percentile of good "
            "standardised pixels)"
            + ("; few images: the per-pixel statistics lean on the image-wide ones"
               if statistics.count < 4 * c.prior_images else ""))
