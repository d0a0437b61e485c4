"""The served graph: one mode's search, map scores and decision as `tf.function`s.

`ServingFunctions` holds what one exported mode computes, on uint8 images,
float images or encoded files, with the inputs checked in the graph; export.py
tracks one per mode in the SavedModel and names their signatures.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf

from ic_anogan import config as config_lib
from ic_anogan.config import ImageScore, SearchConfig
from ic_anogan.data import preprocessing
from ic_anogan.models.model_dir import TrainedModel
from ic_anogan.scoring import anomaly_maps
from ic_anogan.scoring.map_statistics import MapStatistics
from ic_anogan.scoring.search import LatentSearch
from ic_anogan.serving.signatures import GRAPH_DECODABLE_MAGIC, ExportError


@dataclasses.dataclass(frozen=True)
class ServedMode:
    """One exported scoring mode: its search and how it decides.

    Attributes:
      search: the search baked into the graph (mode, Γ, λ, ...).
      threshold: the decision threshold of `image_score`; None serves no decisions.
      statistics: the mode's good-part map statistics; None serves the study score only.
      image_score: the score is_anomaly follows; a map score needs statistics.
      threshold_evidence: what the threshold rests on (threshold_evidence.evidence:
        images, interval of the false-reject rate, warning); None when unknown.
    """

    search: SearchConfig
    threshold: Optional[float]
    statistics: Optional[MapStatistics] = None
    image_score: str = ImageScore.STUDY.value
    threshold_evidence: Optional[dict] = None

    def __post_init__(self):
        if self.image_score not in config_lib.IMAGE_SCORES:
            raise ExportError(f"image_score={self.image_score!r}: expected one of "
                              f"{config_lib.IMAGE_SCORES}")
        if self.image_score != ImageScore.STUDY and self.statistics is None:
            raise ExportError(f"image_score={self.image_score!r} for mode {self.search.mode}: "
                              "the model has no map statistics for it; calibrate them on good "
                              "images, or export image_score 'study'")


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


class ServingFunctions:
    """The graph functions of the export, built once for a model and settings."""

    def __init__(self, model: TrainedModel, served: ServedMode):
        self.image_size = model.model_config.image_size
        self.search = LatentSearch(model.generator, model.features, served.search,
                                   encoder=model.encoder)
        self.references = None
        statistics = served.statistics
        if statistics is not None and statistics.reference_maps is not None:
            # The neighbour statistics' reference maps, as variables: stored once in the
            # SavedModel's variables, not as a constant in every signature's graph.
            self.references = tf.Module(name=f"map_references_{served.search.mode}")
            self.references.latents = tf.Variable(statistics.reference_latents,
                                                  trainable=False, name="latents")
            self.references.maps = tf.Variable(statistics.reference_maps, trainable=False,
                                               name="maps")
            served = dataclasses.replace(served, statistics=dataclasses.replace(
                statistics, reference_latents=self.references.latents,
                reference_maps=self.references.maps))
        self.served = served
        # No threshold: nothing is anomalous by decision (is_anomaly all false),
        # the scores are still served.
        self.threshold = float("inf") if served.threshold is None else float(served.threshold)

    def _outputs(self, images: tf.Tensor) -> dict:
        # An empty batch gets empty outputs: the search runs on one blank
        # image (the convolutions cannot take a batch of 0) and is cut to 0.
        count = tf.shape(images)[0]
        size = self.image_size
        images = tf.cond(count > 0, lambda: images, lambda: tf.zeros([1, size, size, 1]))
        return {k: v[:count] for k, v in self._score(images).items()}

    def _score(self, images: tf.Tensor) -> dict:
        result = self.search.graph_score(images)  # the one-piece in-graph search
        reconstruction = tf.clip_by_value(result["reconstruction"], -1.0, 1.0)
        outputs = {
            "anomaly_score": result["anomaly_score"],
            "residual_score": result["residual_score"],
            "discrimination_score": result["discrimination_score"],
            "reconstruction": preprocessing.model_to_uint8(reconstruction),
            "anomaly_map": result["anomaly_map"],
        }
        decision = result["anomaly_score"]
        statistics = self.served.statistics
        if statistics is not None:
            # From the unrounded G(z), exactly as the in-process scorer does.
            maps = anomaly_maps.map_outputs(images, result["reconstruction"], statistics,
                                            result["latent"])
            outputs.update(map_score=maps[config_lib.map_score_name(self.served.image_score)],
                           map_x=maps["map_x"], map_y=maps["map_y"],
                           standardised_map=maps["standardised_map"],
                           defect_mask=maps["defect_mask"])
            if self.served.image_score != ImageScore.STUDY:
                decision = maps[self.served.image_score]
        # A non-finite score (NaN pixels through score_float) is anomalous:
        # garbage is never judged good. Spelt out, since grappler rewrites
        # not(a <= b) into a > b, which is false for NaN.
        outputs["is_anomaly"] = tf.logical_or(decision > self.threshold,
                                              tf.logical_not(tf.math.is_finite(decision)))
        return outputs

    def score_images(self, images):
        images = _check_images(images, self.image_size, "uint8")
        return self._outputs(preprocessing.to_model_range(
            tf.image.convert_image_dtype(images, tf.float32)))

    def score_float(self, images):
        images = _check_images(images, self.image_size, "float32")
        return self._outputs(tf.clip_by_value(images, -1.0, 1.0))

    def score_encoded(self, image_bytes):
        # The signature takes any shape, so that this check (not the
        # signature's own) is what a client with a wrong shape reads.
        rank_ok = tf.equal(tf.rank(image_bytes), 1)
        with tf.control_dependencies([tf.debugging.Assert(rank_ok, [
                "image_bytes: expected a string tensor [N], one encoded image file per "
                "element; got shape", tf.shape(image_bytes)])]):
            image_bytes = tf.reshape(image_bytes, [-1])
        size = self.image_size

        def decode(element):
            index, data = element
            known = tf.reduce_any([tf.equal(tf.strings.substr(data, 0, len(magic)), magic)
                                   for magic in GRAPH_DECODABLE_MAGIC])
            message = tf.strings.format(
                "image_bytes[{}]: not a PNG, JPEG, BMP or GIF file (decode other formats, e.g. "
                "TIFF, and send the pixels to serving_default)", index)
            with tf.control_dependencies([tf.debugging.Assert(known, [message])]):
                image = tf.io.decode_image(data, dtype=tf.float32, expand_animations=False)
            # At the model's size the antialiased resize is the identity, as
            # preprocessing.gray_to_model's shortcut assumes.
            return preprocessing.resize_to_model(preprocessing.gray_from_any_channels(image),
                                                 size)

        indices = tf.range(tf.shape(image_bytes)[0])
        images = tf.map_fn(decode, (indices, image_bytes),
                           fn_output_signature=tf.TensorSpec([size, size, 1], tf.float32))
        return self._outputs(images)
