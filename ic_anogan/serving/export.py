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
      by the same functions training data went through (preprocessing.py). This is what
      a REST client sends as {"instances": [{"b64": "..."}]};
    - score_float: images float32 [N, S, S, 1] in [-1, 1], for clients that
      preprocess themselves (scoring an export in process uses it for sources
      that are not files);
    - metadata: no input; the baked-in settings as named constants.
  Scoring modes (search, encoder, encoder_search): an export serves one or
  several. The first is the default, served by the three signatures above;
  every exported mode M also has its own M_images, M_encoded and M_float
  (the same inputs as serving_default, score_encoded and score_float), so a
  client picks a mode by signature name and each mode has its own threshold.
  Each scoring signature returns anomaly_score, residual_score,
  discrimination_score [N], is_anomaly [N] (bool, the mode's image score
  against its threshold baked in at export), reconstruction uint8
  [N, S, S, 1] and anomaly_map float32 [N, S, S, 1]. A mode calibrated with
  the good parts' map statistics (anomaly_maps.py) carries them as graph
  constants and also returns map_score float32 [N] (the map score of the
  decision, map_max unless map_topk decides), map_x, map_y int32 [N] (where
  the map peaks), standardised_map float32 [N, S, S, 1] and defect_mask
  uint8 [N, S, S, 1]; its is_anomaly follows the chosen image score.
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
  records (warmup.py), one per signature and batch size, so the first real
  request does not pay for lazy initialisation.
* Signature names, the settings asset and the accepted file formats are
  signatures.py's, the output names outputs.py's.
"""

from __future__ import annotations

import json
import os
import re
from typing import Optional, Sequence

import keras
import tensorflow as tf

from ic_anogan import config as config_lib
from ic_anogan.config import ImageScore, Mode, SearchConfig
from ic_anogan.core import atomic_io
from ic_anogan.models.model_dir import TrainedModel
from ic_anogan.scoring.map_statistics import MapStatistics
from ic_anogan.scoring.outputs import SERVED_MAP_OUTPUTS, SERVED_OUTPUTS
from ic_anogan.serving import warmup
from ic_anogan.serving.serving_graph import ServedMode, ServingFunctions
from ic_anogan.serving.signatures import (INPUT_KINDS, METADATA_SIGNATURE, SETTINGS_ASSET,
                                          WARMUP_FILE, ExportError, default_signature,
                                          mode_signature, signature_names,
                                          without_references)


def _mode_settings(served: ServedMode) -> dict:
    record = {"search": config_lib.to_dict(served.search), "threshold": served.threshold,
              "threshold_evidence": served.threshold_evidence,
              "image_score": served.image_score,
              "outputs": list(SERVED_OUTPUTS) + (list(SERVED_MAP_OUTPUTS)
                                                if served.statistics is not None else [])}
    if served.statistics is not None:
        record["map"] = served.statistics.to_dict()
    return record


def settings(model: TrainedModel, modes: Sequence[ServedMode]) -> dict:
    """The export's self-description; `modes` default first."""
    from ic_anogan import __version__
    default = modes[0]
    names = [m.search.mode for m in modes]
    return {"ic_anogan_version": __version__, "model": config_lib.to_dict(model.model_config),
            "mode": default.search.mode, "search": config_lib.to_dict(default.search),
            "threshold": default.threshold, "threshold_evidence": default.threshold_evidence,
            "image_score": default.image_score,
            "modes": {m.search.mode: _mode_settings(m) for m in modes},
            "signatures": signature_names(names),
            "outputs": _mode_settings(default)["outputs"]}


def next_version(export_base: str) -> int:
    """1 + the largest integer-named folder in `export_base` (1 when none)."""
    if not os.path.isdir(export_base):
        return 1
    versions = [int(d) for d in os.listdir(export_base) if re.fullmatch(r"\d+", d)]
    return max(versions, default=0) + 1


def export_saved_model(model: TrainedModel, export_base: str, search_config: SearchConfig,
                       threshold: Optional[float], warmup_batch_sizes: Sequence[int] = (1,),
                       more_modes: Sequence = (), map_statistics: Optional[MapStatistics] = None,
                       image_score: str = ImageScore.STUDY.value,
                       threshold_evidence: Optional[dict] = None) -> str:
    """Writes `export_base/<next version>/` and returns its path.

    Args:
      model: the trained model (with its encoder for the encoder modes).
      export_base: the folder TF Serving's model base path points at.
      search_config: the default mode's search baked into the graph (mode, Γ, λ, ...).
      threshold: the default mode's decision threshold (of `image_score`);
        None serves no decisions.
      warmup_batch_sizes: batch sizes of the warm-up requests; empty for none.
      more_modes: further modes, each served by its own signatures beside the
        default's: `ServedMode`s, or (SearchConfig, threshold) pairs that
        decide by the study score.
      map_statistics: the default mode's good-part map statistics, or None.
      image_score: what the default mode's is_anomaly follows.
      threshold_evidence: what the default mode's threshold rests on, for the
        metadata (ServedMode.threshold_evidence).

    Raises:
      ExportError: `export_base` is a file, a mode is given twice, a mode
        needs an encoder the model does not have, or a map score has no statistics.
    """
    if os.path.exists(export_base) and not os.path.isdir(export_base):
        raise ExportError(f"{export_base}: expected a folder for versioned exports, found a file")
    served = [ServedMode(search_config, threshold, map_statistics, image_score,
                         threshold_evidence)] + [
        m if isinstance(m, ServedMode) else ServedMode(*m) for m in more_modes]
    names = [m.search.mode for m in served]
    if len(set(names)) != len(names):
        raise ExportError(f"modes {names}: each mode can be exported once")
    unsupported = [n for n in names if n not in model.scoring_modes]
    if unsupported:
        raise ExportError(f"{model.model_dir}: cannot export mode(s) {', '.join(unsupported)}: "
                          "the model has no encoder (train the model with one)")
    functions = [ServingFunctions(model, m) for m in served]
    size = functions[0].image_size
    record = settings(model, served)
    uint8_spec = [tf.TensorSpec(None, tf.uint8, name="images")]
    bytes_spec = [tf.TensorSpec(None, tf.string, name="image_bytes")]
    float_spec = [tf.TensorSpec([None, size, size, 1], tf.float32, name="images")]
    with atomic_io.new_numbered_directory(export_base, next_version(export_base)) as written:
        temp = written["temp"]
        archive = keras.export.ExportArchive()
        archive.track(model.generator)
        archive.track(model.discriminator)
        if model.encoder is not None and any(n != Mode.SEARCH for n in names):
            archive.track(model.encoder)
        for f in functions:
            if f.references is not None:
                archive.track(f.references)
        # The first endpoint becomes serving_default.
        endpoints = [tuple(map(default_signature, INPUT_KINDS)) + (functions[0],)]
        endpoints += [tuple(mode_signature(n, kind) for kind in INPUT_KINDS) + (f,)
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
            "image_score": tf.constant(image_score),
            "pixel_threshold": tf.constant(float("nan") if map_statistics is None
                                           else map_statistics.pixel_threshold),
            # Without the neighbour statistics' reference maps (megabytes, in the
            # variables and the settings asset): what a client reads to know the model.
            "settings_json": tf.constant(json.dumps(without_references(record),
                                                    sort_keys=True)),
        }
        archive.add_endpoint(METADATA_SIGNATURE, lambda: dict(constants), [])
        archive.write_out(temp, verbose=False)
        assets = os.path.join(temp, "assets")
        os.makedirs(assets, exist_ok=True)
        config_lib.write_json(os.path.join(assets, SETTINGS_ASSET), record)
        if warmup_batch_sizes:
            extra = os.path.join(temp, "assets.extra")
            os.makedirs(extra, exist_ok=True)
            with tf.io.TFRecordWriter(os.path.join(extra, WARMUP_FILE)) as writer:
                for serialized in warmup.warmup_records(size, warmup_batch_sizes, names):
                    writer.write(serialized)
    return written["path"]
