"""How x and G(z) are compared pixel by pixel: intensity, gradient structure, local SSIM.

The study compares intensities, |x − G(z)|. On a plain molded surface that
is the right yardstick. On a texture (brushed or cast metal, the grain of a
solar cell) it is not: G cannot redraw the exact grain of a good surface,
so every good pixel carries a residual, while a crack is a change of
structure, not of brightness. The structural comparisons ask instead
whether the local edges agree:

- `gradient`: multi-scale gradient-magnitude similarity (MSGMS; Xue et al.
  2014, used for anomaly maps by RIAD, Zavrtanik et al. 2021, and DRAEM).
  At each of 4 scales (the images average-pooled by 1, 2, 4, 8) the
  gradient magnitudes g_x, g_y of x and G(z) give GMS = (2·g_x·g_y + c) /
  (g_x² + g_y² + c); the map is the mean over scales of 1 − GMS, each scale
  upsampled to full size. Zero where the edges agree, whatever the
  brightness; large where an edge appears, vanishes or bends.
- `ssim`: 1 − the local SSIM (Wang et al. 2004; 7x7 Gaussian window, σ 1.5),
  brightness, contrast and structure at once.

Every comparison is taken at the shift of G(z), up to the alignment
tolerance, that makes it smallest (an edge drawn a pixel off matches; a
defect has no such shift). All are graph code, used as they are by the
in-process scorer and inside the SavedModel.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

# Comparisons that are a difference of intensities, and those of structure.
INTENSITY_COMPARISONS = ("absolute", "signed")
STRUCTURAL_COMPARISONS = ("gradient", "ssim")

# MSGMS: scales (average-pooling factors) and the stability constant of the
# RIAD paper, for images in [0, 1].
GRADIENT_SCALES = (1, 2, 4, 8)
GMS_CONSTANT = 0.0026
# SSIM: window and constants of Wang et al. (2004), for images in [0, 1].
SSIM_WINDOW, SSIM_SIGMA = 7, 1.5
SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2


def _unit_range(images: tf.Tensor) -> tf.Tensor:
    """[-1, 1] model inputs to [0, 1], the range the constants are given for."""
    return (images + 1.0) * 0.5


def _prewitt_magnitude(images: tf.Tensor) -> tf.Tensor:
    """Gradient magnitude [N, H, W, 1] by Prewitt kernels, reflect-padded."""
    kernel_x = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], np.float32) / 3.0
    kernels = np.stack([kernel_x, kernel_x.T], axis=-1)[:, :, None, :]
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    gradients = tf.nn.conv2d(padded, tf.constant(kernels), strides=1, padding="VALID")
    return tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=-1, keepdims=True) + 1e-12)


def gradient_dissimilarity(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """1 − MSGMS(x, G(z)) per pixel, [N, S, S, 1]; inputs in [-1, 1]."""
    x, y = _unit_range(images), _unit_range(reconstructions)
    size = int(images.shape[1])
    total = None
    scales = [s for s in GRADIENT_SCALES if size // s >= 4]
    for scale in scales:
        xs = x if scale == 1 else tf.nn.avg_pool2d(x, scale, scale, "VALID")
        ys = y if scale == 1 else tf.nn.avg_pool2d(y, scale, scale, "VALID")
        gx, gy = _prewitt_magnitude(xs), _prewitt_magnitude(ys)
        similarity = (2.0 * gx * gy + GMS_CONSTANT) / (gx * gx + gy * gy + GMS_CONSTANT)
        dissimilarity = 1.0 - similarity
        if scale > 1:
            dissimilarity = tf.image.resize(dissimilarity, [size, size], method="bilinear")
        total = dissimilarity if total is None else total + dissimilarity
    return total / float(len(scales))


def _gaussian_window() -> np.ndarray:
    axis = np.arange(SSIM_WINDOW) - (SSIM_WINDOW - 1) / 2.0
    line = np.exp(-0.5 * (axis / SSIM_SIGMA) ** 2)
    window = np.outer(line, line)
    return (window / window.sum()).astype(np.float32)[:, :, None, None]


def ssim_dissimilarity(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """1 − local SSIM(x, G(z)) per pixel, [N, S, S, 1]; inputs in [-1, 1]."""
    x, y = _unit_range(images), _unit_range(reconstructions)
    window = tf.constant(_gaussian_window())
    half = SSIM_WINDOW // 2

    def local_mean(values):
        padded = tf.pad(values, [[0, 0], [half, half], [half, half], [0, 0]], mode="REFLECT")
        return tf.nn.conv2d(padded, window, strides=1, padding="VALID")

    mx, my = local_mean(x), local_mean(y)
    vx = local_mean(x * x) - mx * mx
    vy = local_mean(y * y) - my * my
    cxy = local_mean(x * y) - mx * my
    ssim = ((2 * mx * my + SSIM_C1) * (2 * cxy + SSIM_C2)) / (
        (mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2))
    return 1.0 - ssim


COMPARISONS: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "absolute": lambda x, y: tf.abs(x - y),
    "signed": lambda x, y: x - y,
    "gradient": gradient_dissimilarity,
    "ssim": ssim_dissimilarity,
}


def aligned_comparison(images: tf.Tensor, reconstructions: tf.Tensor, tolerance: int,
                       comparison: str = "absolute") -> tf.Tensor:
    """Per pixel, `comparison` of x and G(z) at the shift of G(z) (up to `tolerance`
    pixels each way) that makes it smallest in magnitude: [N, S, S, 1].

    G redraws an edge, a lead or a character of the marking a pixel off where
    the part sits a little differently; compared pixel by pixel that is a
    line of large residuals on every good part, and the standardised map
    learns to shrug at those places, defects there included. Compared with
    the best nearby pixel of G(z), an edge drawn a pixel off matches; a void
    or scratch has no such pixel nearby. Border pixels compare with G(z)
    mirrored at the border. `signed` keeps the sign of the closest difference.
    """
    if comparison not in COMPARISONS:
        raise ValueError(f"unknown comparison {comparison!r}; expected one of "
                         f"{tuple(COMPARISONS)}")
    images = tf.convert_to_tensor(images, tf.float32)
    reconstructions = tf.convert_to_tensor(reconstructions, tf.float32)
    compare = COMPARISONS[comparison]
    if tolerance == 0:
        return compare(images, reconstructions)
    t = tolerance
    size = images.shape[1]
    padded = tf.pad(reconstructions, [[0, 0], [t, t], [t, t], [0, 0]], mode="SYMMETRIC")
    best = best_value = None
    for dy in range(2 * t + 1):
        for dx in range(2 * t + 1):
            value = compare(images, padded[:, dy:dy + size, dx:dx + size, :])
            magnitude = tf.abs(value)
            if best is None:
                best, best_value = magnitude, value
            else:
                closer = magnitude < best
                best = tf.where(closer, magnitude, best)
                if comparison == "signed":
                    best_value = tf.where(closer, value, best_value)
    return best_value if comparison == "signed" else best
