"""Defect-mask overlays as pixels and PNG bytes, with numpy and Pillow only (no figures).

Used by the scoring report (plots.defect_overlays) and by bulk scoring, which
writes each anomalous file's mask and overlay from a Beam worker.
"""

from __future__ import annotations

import io
from typing import Optional

import numpy as np

MASK_RED = np.array([255.0, 0.0, 0.0])
TRUTH_LIME = np.array([0.0, 255.0, 0.0])


def overlay_rgb(gray: np.ndarray, mask: np.ndarray,
                truth: Optional[np.ndarray] = None) -> np.ndarray:
    """Gray [S, S] in [0, 1] with the defect mask in red and the true defect, when known,
    outlined in lime: uint8 [S, S, 3]."""
    rgb = np.repeat(np.clip(gray * 255.0, 0, 255)[..., None], 3, axis=-1)
    mask = mask > 0
    rgb[mask] = 0.45 * rgb[mask] + 0.55 * MASK_RED
    if truth is not None:
        truth = truth > 0.5
        padded = np.pad(truth, 1)
        interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        rgb[truth & ~interior] = TRUTH_LIME
    return rgb.astype(np.uint8)


def png_bytes(pixels: np.ndarray, scale: int = 1) -> bytes:
    """uint8 [H, W] or [H, W, 3] as PNG bytes, enlarged `scale` times (nearest)."""
    from PIL import Image
    image = Image.fromarray(pixels)
    if scale != 1:
        image = image.resize((pixels.shape[1] * scale, pixels.shape[0] * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def mask_pngs(data: bytes, served: dict, image_size: int, scale: int = 4) -> tuple:
    """(mask PNG, overlay PNG) of one served result: the defect mask in white, and the file's
    image at the model's size with the mask in red."""
    from PIL import Image

    from ic_anogan.data.preprocessing import from_model_range, gray_from_decoded, gray_to_model
    with Image.open(io.BytesIO(data)) as image:
        gray = gray_from_decoded(np.asarray(image))
    pixels = from_model_range(gray_to_model(gray, image_size)[..., 0])
    mask = np.squeeze(np.asarray(served["defect_mask"])) > 0
    return (png_bytes((mask * 255).astype(np.uint8), scale),
            png_bytes(overlay_rgb(pixels, mask), scale))
