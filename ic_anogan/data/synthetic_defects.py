"""Synthetic surface defects pasted into any grayscale image, with their masks.

Textured surfaces fail in a few ways: a pit (a small dark or bright spot), a
crack (a thin line that wanders), an uneven region (a large patch shaded a
little lighter or darker) and a frayed region (a patch whose texture is
disturbed: its grain lost under a rough, blotchy finish). The last two are
large and faint: many pixels change a little, none much.

Each defect is drawn with its size, contrast, shape and position varied, so
that settings chosen on them do not fit one rendering. They paste into the
built-in texture set (synthetic_texture.py) and into good real images, which
gives a validation split with defects for a set that has only good images
(benchmarks/real_surfaces.py).
"""

from __future__ import annotations

import numpy as np

from ic_anogan.data.image_set import DataError

SURFACE_DEFECT_TYPES = ("pit", "crack", "uneven", "frayed")
# The large faint ones, reported together in the tables.
LARGE_FAINT_TYPES = ("uneven", "frayed")


def smooth_noise(rng: np.random.Generator, shape: tuple, sigma_along: float,
                 sigma_across: float = None, angle: float = 0.0) -> np.ndarray:
    """White noise filtered by a (possibly anisotropic, rotated) Gaussian, periodic,
    scaled to zero mean and unit deviation."""
    sigma_across = sigma_along if sigma_across is None else sigma_across
    height, width = shape
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    along = fx * np.cos(angle) + fy * np.sin(angle)
    across = -fx * np.sin(angle) + fy * np.cos(angle)
    transfer = np.exp(-2.0 * np.pi ** 2 * ((sigma_along * along) ** 2
                                           + (sigma_across * across) ** 2))
    filtered = np.fft.irfft2(np.fft.rfft2(noise) * transfer, s=shape)
    filtered -= filtered.mean()
    return filtered / max(filtered.std(), 1e-12)


def _soft_region(rng: np.random.Generator, size: int, radius: float, edge: float) -> tuple:
    """An irregular blob inside the image: its weight in [0, 1] with a soft edge of
    `edge` pixels, and its centre."""
    margin = min(radius * 0.6, size / 2 - 1)
    cy, cx = rng.uniform(margin, size - margin, 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = np.arctan2(yy - cy, xx - cx)
    # A radius that wanders with the angle: a few low harmonics.
    wobble = sum(rng.uniform(0.05, 0.2) / k * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
                 for k in (2, 3, 5))
    distance = np.hypot(yy - cy, xx - cx) / (radius * (1.0 + wobble))
    weight = np.clip((1.0 - distance) * radius / max(edge, 1e-6) + 0.5, 0.0, 1.0)
    return weight * weight * (3 - 2 * weight), (cy, cx)  # smoothstep


def _pit(rng, image, scale):
    size = image.shape[0]
    radius = rng.uniform(0.8, 2.5) * scale
    cy, cx = rng.uniform(radius + 1, size - radius - 1, 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    stretch = rng.uniform(0.7, 1.4)
    distance = np.hypot((yy - cy) * stretch, (xx - cx) / stretch) / radius
    depth = np.clip(1.0 - distance ** 2, 0.0, 1.0)
    contrast = rng.uniform(0.12, 0.35) * (-1.0 if rng.uniform() < 0.7 else 1.0)
    return image + contrast * depth, distance <= 1.0


def _crack(rng, image, scale):
    size = image.shape[0]
    length = rng.uniform(12.0, 40.0) * scale
    width = rng.uniform(0.6, 1.6) * scale
    y, x = rng.uniform(0.15 * size, 0.85 * size, 2)
    heading = rng.uniform(0, 2 * np.pi)
    points = []
    for _ in range(int(length * 2)):  # half-pixel steps
        points.append((y, x))
        heading += rng.normal(0.0, 0.12)
        y = float(np.clip(y + 0.5 * np.sin(heading), 0, size - 1))
        x = float(np.clip(x + 0.5 * np.cos(heading), 0, size - 1))
    points = np.asarray(points)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    distance = np.full((size, size), np.inf)
    for py, px in points:
        distance = np.minimum(distance, np.hypot(yy - py, xx - px))
    half = width / 2.0
    profile = np.clip(1.0 - (distance - half) / 0.75, 0.0, 1.0)
    contrast = rng.uniform(0.08, 0.3)
    return image - contrast * profile, distance <= half + 0.5


def _uneven(rng, image, scale):
    size = image.shape[0]
    weight, _ = _soft_region(rng, size, rng.uniform(8.0, 22.0) * scale, 4.0 * scale)
    contrast = rng.uniform(0.03, 0.09) * (-1.0 if rng.uniform() < 0.5 else 1.0)
    return image + contrast * weight, weight > 0.5


def _frayed(rng, image, scale):
    size = image.shape[0]
    weight, _ = _soft_region(rng, size, rng.uniform(7.0, 18.0) * scale, 3.0 * scale)
    # The grain is lost: the surface under the region is smoothed, then roughened
    # with isotropic blotches of about the texture's own contrast.
    smoothed = image + 0.0
    for _ in range(2):
        smoothed = (smoothed + np.roll(smoothed, 1, 0) + np.roll(smoothed, -1, 0)
                    + np.roll(smoothed, 1, 1) + np.roll(smoothed, -1, 1)) / 5.0
    rough = smooth_noise(rng, image.shape, rng.uniform(0.6, 1.5) * scale)
    amplitude = rng.uniform(0.6, 1.2) * max(float(image.std()), 0.02)
    disturbed = smoothed + amplitude * rough
    return (1.0 - weight) * image + weight * disturbed, weight > 0.5


_PASTERS = {"pit": _pit, "crack": _crack, "uneven": _uneven, "frayed": _frayed}


def paste_defect(rng: np.random.Generator, image: np.ndarray, defect: str) -> tuple:
    """One `defect` of SURFACE_DEFECT_TYPES pasted into a square image [S, S] in [0, 1].

    Sizes scale with the image: they are given for 64 px.

    Returns:
      (the image [S, S] clipped to [0, 1], its defect mask [S, S] bool).
    """
    if defect not in _PASTERS:
        raise DataError(f"unknown surface defect {defect!r}; expected one of "
                        f"{SURFACE_DEFECT_TYPES}")
    image = np.asarray(image, np.float64)
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise DataError(f"paste_defect needs a square 2-D image, got shape {image.shape}")
    pasted, mask = _PASTERS[defect](rng, image, image.shape[0] / 64.0)
    return np.clip(pasted, 0.0, 1.0), mask
