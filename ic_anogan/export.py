"""SavedModel export with the AnoGAN search inside the graph, for TF Serving.

What a deployment needs, and how this module provides it:

* The whole search in the graph. The served functions call `LatentSearch`'s
  one-piece `tf.while_loop` search, so a request runs Γ Adam steps on the
  server with no client round trips. The search holds no state between calls,
  so TF Serving may run requests concurrently.
* TF Serving's loader. TF Serving (and `saved_model_cli run`) load a
  SavedModel through the session-based C++ loader, which must find every
  variable by its checkpoint key. A `tf.Module` holding Keras 3 models saved
  with `tf.saved_model.save` produced an artefact that this loader rejected
  ("Could not find variable ..."); models tracked through
  `keras.export.ExportArchive` load. So the export goes through ExportArchive.
* Signatures (the first is TF Serving's default):
    - serving_default: images uint8 [N, S, S, 1];
    - score_encoded: image_bytes string [N], PNG / JPEG / BMP / GIF files of
      any size and colour, decoded, converted to gray and resized in the graph
      by the same functions training data went through (data.py). This is what
      a REST client sends as {"instances": [{"b64": "..."}]};
    - score_float: images float32 [N, S, S, 1] in [-1, 1], for clients that
      preprocess themselves (score_main.py --saved_model uses it for sources
      that are not files);
    - metadata: no input; the baked-in settings as named constants.
  Scoring modes (search, encoder, encoder_search): an export serves one or
  several. The first is the default, served by the three signatures above;
  every exported mode M also has its own M_images, M_encoded and M_float
  (the same inputs as serving_default, score_encoded and score_float), so a
  client picks a mode by signature name and each mode has its own threshold.
  Each scoring signature returns anomaly_score, residual_score,
  discrimination_score [N], is_anomaly [N] (bool, against the threshold baked
  in at export), reconstruction uint8 [N, S, S, 1] and anomaly_map float32
  [N, S, S, 1].
* Inputs are checked in the graph: wrong rank, channels or size fail with a
  message that says what was expected.
* Versions. `export_saved_model` writes BASE/<next integer>/ under a temporary
  name and renames it when complete, so TF Serving, which watches BASE for
  integer folders, never sees half a model; an existing version is never
  overwritten.
* The settings (per mode: steps, λ, learning rate, restarts, seed,
  threshold; the model sizes) are written to assets/ic_anogan.json and
  returned by `metadata` (its scalar constants describe the default mode).
* Warm-up: assets.extra/tf_serving_warmup_requests holds PredictionLog
  records (one per signature and batch size) so the first real request does
  not pay for lazy initialisation. They are encoded here by hand (a few
  protobuf fields), to avoid depending on the tensorflow-serving-api package.
"""

from __future__ import annotations

import io
import json
import os
import re
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from ic_anogan import atomic_io, config as config_lib, data as data_lib
from ic_anogan.config import SearchConfig
from ic_anogan.search import LatentSearch
from ic_anogan.train import TrainedModel

SETTINGS_ASSET = "ic_anogan.json"
WARMUP_FILE = "tf_serving_warmup_requests"
SIGNATURES = ("serving_default", "score_encoded", "score_float", "metadata")
# Per exported mode M: M_images (uint8), M_encoded (bytes), M_float.
MODE_SIGNATURE_SUFFIXES = {"images": "serving_default", "encoded": "score_encoded",
                           "float": "score_float"}
SCORE_OUTPUTS = ("anomaly_score", "residual_score", "discrimination_score", "is_anomaly",
                 "reconstruction", "anomaly_map")


class ExportError(ValueError):
    """The export cannot be written (bad base path, settings)."""


def _check_images(images: tf.Tensor, image_size: int, dtype_name: str) -> tf.Tensor:
    """Asserts [N, S, S, 1] with messages a client can act on; returns it with a static shape.

    Each condition is computed so that it can fail only for its own reason
    (the shape is zero-padded before indexing), so exactly one message fires.
    """
    expected = f"images: expected a {dtype_name} tensor of shape [N, {image_size}, {image_size}, 1]"
    shape = tf.shape(images)
    padded = tf.concat([shape, tf.zeros([4], tf.int32)], 0)
    rank_ok = tf.equal(tf.size(shape), 4)
    channels_ok = tf.logical_or(tf.logical_not(rank_ok), tf.equal(padded[3], 1))
    size_ok = tf.logical_or(tf.logical_not(rank_ok), tf.reduce_all(
        tf.equal(padded[1:3], tf.constant([image_size, image_size]))))
    checks = [
        tf.debugging.Assert(rank_ok, [f"{expected}; got another rank, shape", shape]),
        tf.debugging.Assert(channels_ok, [f"{expected}; got a channel count other than 1 "
                                          "(send gray images, or use score_encoded); shape",
                                          shape]),
        tf.debugging.Assert(size_ok, [f"{expected}; got another height/width (resize first, "
                                      "or use score_encoded, which resizes); shape", shape]),
    ]
    with tf.control_dependencies(checks):
        images = tf.identity(images)
    return tf.ensure_shape(images, [None, image_size, image_size, 1])


def _gray_from_any_channels(image: tf.Tensor) -> tf.Tensor:
    """[H, W, C] float in [0, 1] -> [H, W, 1]: the same rule as data.gray_from_decoded."""
    channels = tf.shape(image)[-1]
    return tf.case([
        (tf.equal(channels, 1), lambda: image[..., :1]),
        (tf.equal(channels, 2), lambda: image[..., :1]),  # gray + alpha
        (tf.equal(channels, 3), lambda: tf.image.rgb_to_grayscale(image[..., :3])),
    ], default=lambda: tf.image.rgb_to_grayscale(image[..., :3]), exclusive=True)


class ServingFunctions:
    """The graph functions of the export, built once for a model and settings."""

    def __init__(self, model: TrainedModel, search_config: SearchConfig,
                 threshold: Optional[float]):
        self.image_size = model.model_config.image_size
        self.search = LatentSearch(model.generator, model.features, search_config,
                                   encoder=model.encoder)
        # No threshold: nothing is anomalous by decision (is_anomaly all false),
        # the scores are still served.
        self.threshold = float("inf") if threshold is None else float(threshold)

    def _outputs(self, images: tf.Tensor) -> dict:
        result = self.search.graph_score(images)  # the one-piece in-graph search
        reconstruction = tf.clip_by_value(result["reconstruction"], -1.0, 1.0)
        return {
            "anomaly_score": result["anomaly_score"],
            "residual_score": result["residual_score"],
            "discrimination_score": result["discrimination_score"],
            "is_anomaly": result["anomaly_score"] > self.threshold,
            "reconstruction": tf.cast(tf.round((reconstruction + 1.0) * 127.5), tf.uint8),
            "anomaly_map": result["anomaly_map"],
        }

    def score_images(self, images):
        images = _check_images(images, self.image_size, "uint8")
        return self._outputs(tf.image.convert_image_dtype(images, tf.float32) * 2.0 - 1.0)

    def score_float(self, images):
        images = _check_images(images, self.image_size, "float32")
        return self._outputs(tf.clip_by_value(images, -1.0, 1.0))

    def score_encoded(self, image_bytes):
        tf.debugging.assert_rank(image_bytes, 1, message="image_bytes: expected a string "
                                 "tensor [N], one encoded image file per element")
        size = self.image_size

        def decode(data):
            image = tf.io.decode_image(data, dtype=tf.float32, expand_animations=False)
            # At the model's size the antialiased resize is the identity, as
            # data.py's shortcut assumes.
            return data_lib.resize_to_model(_gray_from_any_channels(image), size)

        images = tf.map_fn(decode, image_bytes,
                           fn_output_signature=tf.TensorSpec([size, size, 1], tf.float32))
        return self._outputs(images)


def signature_names(modes: Sequence[str]) -> list:
    """Every signature an export of `modes` (the first being the default) has."""
    names = list(SIGNATURES[:3])
    for mode in modes:
        names += [f"{mode}_{suffix}" for suffix in MODE_SIGNATURE_SUFFIXES]
    return names + ["metadata"]


def settings(model: TrainedModel, modes: Sequence[tuple]) -> dict:
    """The export's self-description; `modes` is [(SearchConfig, threshold)], default first."""
    from ic_anogan import __version__
    default_config, default_threshold = modes[0]
    names = [c.mode for c, _ in modes]
    return {"ic_anogan_version": __version__, "model": config_lib.to_dict(model.model_config),
            "mode": default_config.mode, "search": config_lib.to_dict(default_config),
            "threshold": default_threshold,
            "modes": {c.mode: {"search": config_lib.to_dict(c), "threshold": t} for c, t in modes},
            "signatures": signature_names(names), "outputs": list(SCORE_OUTPUTS)}


def next_version(export_base: str) -> int:
    """1 + the largest integer-named folder in `export_base` (1 when none)."""
    if not os.path.isdir(export_base):
        return 1
    versions = [int(d) for d in os.listdir(export_base) if re.fullmatch(r"\d+", d)]
    return max(versions, default=0) + 1


# -- warm-up records: PredictionLog{predict_log{request{model_spec, inputs}}} --

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


def _warmup_records(image_size: int, batch_sizes: Sequence[int], modes: Sequence[str]) -> list:
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
        for images_name, encoded_name in [("serving_default", "score_encoded")] + [
                (f"{m}_images", f"{m}_encoded") for m in modes]:
            records.append(prediction_log(images_name, {"images": pixels}))
            records.append(prediction_log(encoded_name, {"image_bytes": encoded}))
    return records


def export_saved_model(model: TrainedModel, export_base: str, search_config: SearchConfig,
                       threshold: Optional[float], warmup_batch_sizes: Sequence[int] = (1,),
                       more_modes: Sequence[tuple] = ()) -> str:
    """Writes `export_base/<next version>/` and returns its path.

    Args:
      model: the trained model (with its encoder for the encoder modes).
      export_base: the folder TF Serving's --model_base_path points at.
      search_config: the default mode's search baked into the graph (mode, Γ, λ, ...).
      threshold: the default mode's decision threshold; None serves no decisions.
      warmup_batch_sizes: batch sizes of the warm-up requests; empty for none.
      more_modes: (SearchConfig, threshold) of further modes, each served by
        its own signatures beside the default's.

    Raises:
      ExportError: `export_base` is a file, a mode is given twice, or a mode
        needs an encoder the model does not have.
    """
    if os.path.exists(export_base) and not os.path.isdir(export_base):
        raise ExportError(f"{export_base}: expected a folder for versioned exports, found a file")
    modes = [(search_config, threshold)] + list(more_modes)
    names = [c.mode for c, _ in modes]
    if len(set(names)) != len(names):
        raise ExportError(f"modes {names}: each mode can be exported once")
    unsupported = [n for n in names if n not in model.scoring_modes]
    if unsupported:
        raise ExportError(f"{model.model_dir}: cannot export mode(s) {', '.join(unsupported)}: "
                          "the model has no encoder (train one with train_main.py)")
    functions = [ServingFunctions(model, c, t) for c, t in modes]
    size = functions[0].image_size
    path = os.path.join(export_base, str(next_version(export_base)))
    record = settings(model, modes)
    uint8_spec = [tf.TensorSpec(None, tf.uint8, name="images")]
    bytes_spec = [tf.TensorSpec([None], tf.string, name="image_bytes")]
    float_spec = [tf.TensorSpec([None, size, size, 1], tf.float32, name="images")]
    with atomic_io.new_directory(path) as temp:
        archive = keras.export.ExportArchive()
        archive.track(model.generator)
        archive.track(model.discriminator)
        if model.encoder is not None and any(n != "search" for n in names):
            archive.track(model.encoder)
        # The first endpoint becomes serving_default.
        endpoints = [("serving_default", "score_encoded", "score_float", functions[0])]
        endpoints += [(f"{n}_images", f"{n}_encoded", f"{n}_float", f)
                      for n, f in zip(names, functions)]
        for images_name, encoded_name, float_name, f in endpoints:
            archive.add_endpoint(images_name, f.score_images, uint8_spec)
            archive.add_endpoint(encoded_name, f.score_encoded, bytes_spec)
            archive.add_endpoint(float_name, f.score_float, float_spec)
        constants = {
            "image_size": tf.constant(size, tf.int32),
            "latent_dim": tf.constant(model.model_config.latent_dim, tf.int32),
            "mode": tf.constant(search_config.mode),
            "modes": tf.constant(names),
            "search_steps": tf.constant(search_config.steps, tf.int32),
            "discrimination_weight": tf.constant(search_config.discrimination_weight),
            "learning_rate": tf.constant(search_config.learning_rate),
            "restarts": tf.constant(search_config.restarts, tf.int32),
            "seed": tf.constant(search_config.seed, tf.int32),
            "clip_z": tf.constant(search_config.clip_z or 0.0),
            "threshold": tf.constant(functions[0].threshold),
            "settings_json": tf.constant(json.dumps(record, sort_keys=True)),
        }
        archive.add_endpoint("metadata", lambda: dict(constants), [])
        archive.write_out(temp, verbose=False)
        assets = os.path.join(temp, "assets")
        os.makedirs(assets, exist_ok=True)
        config_lib.write_json(os.path.join(assets, SETTINGS_ASSET), record)
        if warmup_batch_sizes:
            extra = os.path.join(temp, "assets.extra")
            os.makedirs(extra, exist_ok=True)
            with tf.io.TFRecordWriter(os.path.join(extra, WARMUP_FILE)) as writer:
                for serialized in _warmup_records(size, warmup_batch_sizes, names):
                    writer.write(serialized)
    return path


def read_settings(saved_model_dir: str) -> dict:
    """The settings JSON an export carries in assets/."""
    path = os.path.join(saved_model_dir, "assets", SETTINGS_ASSET)
    if not os.path.exists(path):
        raise ExportError(f"{saved_model_dir}: no assets/{SETTINGS_ASSET}; "
                          "not a SavedModel exported by ic_anogan")
    return config_lib.read_json(path)
