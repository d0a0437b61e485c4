"""How a pixel becomes a model input, and back: defined once, for numpy and for graphs.

Training data (image_files.py, idx_files.py, synthetic.py), the exported
graph's decoding (export.py), the served reconstruction (serving_graph.py) and the
figures all go through these functions, so a served image gets exactly the
preprocessing a trained one did.

The model works in [-1, 1] (G ends in tanh); files and figures work in
[0, 1] or uint8 [0, 255].
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# tf.image.rgb_to_grayscale's weights: numpy and the exported graph must agree.
GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], np.float32)


def to_model_range(unit):
    """[0, 1] -> [-1, 1]; numpy arrays and tensors alike."""
    return unit * 2.0 - 1.0


def from_model_range(model):
    """[-1, 1] -> [0, 1]; numpy arrays and tensors alike."""
    return (model + 1.0) / 2.0


def uint8_to_model(pixels: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 in [-1, 1]."""
    return to_model_range(np.asarray(pixels, np.float32) / 255.0).astype(np.float32)


def model_to_uint8(images: tf.Tensor) -> tf.Tensor:
    """[-1, 1] (clipped) -> uint8 [0, 255], rounded; the served reconstruction."""
    unit = from_model_range(tf.clip_by_value(images, -1.0, 1.0))
    return tf.cast(tf.round(unit * 255.0), tf.uint8)


def gray_from_decoded(pixels: np.ndarray) -> np.ndarray:
    """Decoded pixels (H, W[, C]) of any integer or float dtype -> gray float32 [H, W] in [0, 1]."""
    array = np.asarray(pixels)
    if np.issubdtype(array.dtype, np.integer):
        scale = 65535.0 if array.dtype.itemsize >= 2 else 255.0
        if array.dtype.itemsize >= 4:  # PIL's mode "I" holds 16-bit data in int32
            scale = 65535.0 if array.max(initial=0) > 255 else 255.0
        array = array.astype(np.float32) / scale
    else:
        array = np.clip(array.astype(np.float32), 0.0, 1.0)
    if array.ndim == 3:
        channels = array.shape[-1]
        if channels in (2, 4):  # drop alpha
            array = array[..., :channels - 1]
            channels -= 1
        if channels == 3:
            array = np.tensordot(array, GRAY_WEIGHTS, axes=([-1], [0]))
        else:
            array = array[..., 0]
    return array.astype(np.float32)


def gray_from_any_channels(image: tf.Tensor) -> tf.Tensor:
    """Graph version of `gray_from_decoded` for [H, W, C] float in [0, 1] -> [H, W, 1]."""
    channels = tf.shape(image)[-1]
    return tf.case([
        (tf.equal(channels, 1), lambda: image[..., :1]),
        (tf.equal(channels, 2), lambda: image[..., :1]),  # gray + alpha
        (tf.equal(channels, 3), lambda: tf.image.rgb_to_grayscale(image[..., :3])),
    ], default=lambda: tf.image.rgb_to_grayscale(image[..., :3]), exclusive=True)


def resize_to_model(gray: tf.Tensor, image_size: int) -> tf.Tensor:
    """Gray [..., H, W, 1] in [0, 1] -> [..., S, S, 1] in [-1, 1].

    Antialiased bilinear, so downsampling a camera image averages its pixels
    rather than aliasing them. At the model's size it is the identity, which
    `gray_to_model`'s shortcut relies on.
    """
    gray = tf.convert_to_tensor(gray, tf.float32)
    resized = tf.image.resize(gray, [image_size, image_size], method="bilinear",
                              antialias=True)
    return to_model_range(tf.clip_by_value(resized, 0.0, 1.0))


def gray_to_model(gray: np.ndarray, image_size: int) -> np.ndarray:
    """Gray float32 [H, W] in [0, 1] -> model input [S, S, 1] in [-1, 1]."""
    if gray.shape == (image_size, image_size):
        return to_model_range(np.clip(gray, 0.0, 1.0))[..., None].astype(np.float32)
    return resize_to_model(gray[..., None], image_size).numpy()
