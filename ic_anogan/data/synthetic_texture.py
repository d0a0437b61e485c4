"""Built-in synthetic textured surfaces: brushed and cast metal, with surface defects.

The IC renderer draws plain molded packages, where G can redraw a good part
almost exactly. Real inspection surfaces are textured: the grain of brushed
metal, the mottle of a casting, the crystals of a solar cell. G cannot
redraw their exact grain, so every good pixel carries a residual. This set
is for developing maps that see defects on such surfaces; the real sets
judge them.

A good surface is a streaked grain (white noise stretched along a direction
that varies a little from part to part), a fine isotropic grain, a faint
mottle, uneven light and sensor noise. Defects (synthetic_defects.py): pits,
cracks, and the large faint uneven and frayed regions.
"""

from __future__ import annotations

import numpy as np

from ic_anogan.data.image_set import GOOD, DataError
from ic_anogan.data.synthetic_defects import SURFACE_DEFECT_TYPES, paste_defect, smooth_noise

_SUPERSAMPLE = 2


def _surface(rng: np.random.Generator, size: int) -> np.ndarray:
    """A good surface [size, size] in [0, 1], before sensor noise."""
    scale = size / 64.0
    shape = (size, size)
    angle = rng.normal(0.0, np.deg2rad(6.0))
    streaks = smooth_noise(rng, shape, rng.uniform(6.0, 12.0) * scale,
                           rng.uniform(0.3, 0.6) * scale, angle)
    grain = smooth_noise(rng, shape, 0.6 * scale)
    mottle = smooth_noise(rng, shape, 10.0 * scale)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    light = rng.uniform(-1, 1, 2) @ np.stack([yy.ravel(), xx.ravel()]).reshape(2, -1)
    surface = (rng.uniform(0.45, 0.6) + rng.uniform(0.05, 0.08) * streaks
               + 0.025 * grain + 0.015 * mottle + 0.06 * light.reshape(shape))
    return surface


def render_surface(rng: np.random.Generator, image_size: int,
                   defect: str = GOOD) -> tuple[np.ndarray, np.ndarray]:
    """One textured surface with `defect` ("good" or one of SURFACE_DEFECT_TYPES).

    Returns:
      (image uint8 [S, S], mask uint8 [S, S], 255 where defective).
    """
    if defect != GOOD and defect not in SURFACE_DEFECT_TYPES:
        raise DataError(f"unknown defect type {defect!r} for texture; expected one of "
                        f"{SURFACE_DEFECT_TYPES}")
    high = image_size * _SUPERSAMPLE
    image = _surface(rng, high)
    mask = np.zeros((high, high), bool)
    if defect != GOOD:
        image, mask = paste_defect(rng, image, defect)
    shape = (image_size, _SUPERSAMPLE, image_size, _SUPERSAMPLE)
    image = image.reshape(shape).mean(axis=(1, 3)) + rng.normal(0.0, 0.01, (image_size,) * 2)
    coverage = mask.astype(np.float64).reshape(shape).mean(axis=(1, 3))
    image_u8 = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    return image_u8, np.where(coverage >= 0.5, 255, 0).astype(np.uint8)
