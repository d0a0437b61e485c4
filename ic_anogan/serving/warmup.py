"""TF Serving warm-up records: PredictionLog protobufs, encoded by hand.

assets.extra/tf_serving_warmup_requests holds one request per signature and
batch size, so the first real request does not pay for lazy initialisation.
The few protobuf fields are written here, to avoid depending on the
tensorflow-serving-api package.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from ic_anogan.serving import signatures


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log(signature_name: str, inputs: dict, model_name: str = "") -> bytes:
    """Serialised tensorflow.serving.PredictionLog with one PredictRequest.

    Field numbers (tensorflow_serving/apis): PredictionLog.predict_log = 6,
    PredictLog.request = 1, PredictRequest.model_spec = 1, .inputs = 2 (a map:
    key = 1, value = 2), ModelSpec.name = 1, .signature_name = 3.
    """
    spec = (_field(1, model_name.encode()) if model_name else b"") + \
        _field(3, signature_name.encode())
    request = _field(1, spec)
    for key, value in inputs.items():
        tensor = tf.make_tensor_proto(value).SerializeToString()
        request += _field(2, _field(1, key.encode()) + _field(2, tensor))
    return _field(6, _field(1, request))


def warmup_records(image_size: int, batch_sizes: Sequence[int], modes: Sequence[str]) -> list:
    """One uint8 and one encoded request per batch size for the default and every mode."""
    rng = np.random.default_rng(0)
    records = []
    for n in batch_sizes:
        pixels = rng.integers(0, 256, (n, image_size, image_size, 1), dtype=np.uint8)
        encoded = []
        for image in pixels:
            buffer = io.BytesIO()
            Image.fromarray(image[..., 0]).save(buffer, format="PNG")
            encoded.append(buffer.getvalue())
        encoded = np.array(encoded, dtype=object)
        pairs = [(signatures.default_signature("images"), signatures.default_signature("encoded"))]
        pairs += [(signatures.mode_signature(m, "images"), signatures.mode_signature(m, "encoded"))
                  for m in modes]
        for images_name, encoded_name in pairs:
            records.append(prediction_log(images_name, {"images": pixels}))
            records.append(prediction_log(encoded_name, {"image_bytes": encoded}))
    return records
