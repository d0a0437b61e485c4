"""The model directory: its files, loading a trained model, and what identifies a run.

A model directory holds everything scoring needs: G's and D's weights (the
kept, averaged G), the resolved config (config.json), the held-out good file
list, and, when trained, the encoder and the calibration. Training writes it
(training/gan.py, training/encoder.py, jobs/calibrate.py); scoring and export only read
it, through `load_trained_model`, and never import the trainer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from typing import Optional

import keras
import numpy as np

from ic_anogan import config as config_lib
from ic_anogan.config import DataConfig, Mode, ModelConfig, TrainConfig
from ic_anogan.core import atomic_io
from ic_anogan.core.errors import IcAnoganError
from ic_anogan.models.networks import (Discriminator, Encoder, FeatureExtractor, Generator,
                                       build_encoder, build_models)

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.npz"
GENERATOR_FILE = "generator.weights.h5"
DISCRIMINATOR_FILE = "discriminator.weights.h5"
HELDOUT_FILE = "heldout.txt"
HISTORY_FILE = "history.json"
ENCODER_FILE = "encoder.weights.h5"
ENCODER_CONFIG_FILE = "encoder.json"
ENCODER_CHECKPOINT_FILE = "encoder_checkpoint.npz"
ENCODER_HISTORY_FILE = "encoder_history.json"
FORMAT_VERSION = 1


class ModelDirError(IcAnoganError, ValueError):
    """The model directory is missing, incomplete or holds another run."""


@dataclasses.dataclass
class TrainedModel:
    """What scoring needs from a model directory."""

    model_dir: str
    model_config: ModelConfig
    generator: Generator
    discriminator: Discriminator
    features: FeatureExtractor
    metadata: dict
    # E, when an encoder was trained against these G and D (None otherwise).
    encoder: Optional[Encoder] = None

    @property
    def scoring_modes(self) -> tuple:
        """The scoring modes this model supports."""
        return config_lib.SCORING_MODES if self.encoder is not None else (Mode.SEARCH.value,)


def run_description(model_config: ModelConfig, train_config: TrainConfig,
                    data_config: DataConfig) -> dict:
    """What identifies a run in config.json: a resumed run must ask for the same."""
    data = {"spec": data_config.data_dir or "synthetic"}
    if data_config.data_dir in (None, "", "synthetic"):
        data["synthetic_package"] = data_config.package
    return {"format_version": FORMAT_VERSION, "model": config_lib.to_dict(model_config),
            "train": config_lib.to_dict(train_config), "data": data}


def check_same_run(model_dir: str, wanted: dict) -> None:
    """Raises ModelDirError when `model_dir` holds a run other than `wanted`."""
    stored = config_lib.read_json(os.path.join(model_dir, CONFIG_FILE))
    for section in ("model", "train", "data"):
        for key, value in wanted[section].items():
            if section == "train" and key in ("epochs", "updates"):
                continue  # a longer run may be asked for on resume
            if section == "model" and value is None:
                continue  # resolved from the data (training_plan.py), checked once resolved
            if stored.get(section, {}).get(key) != value:
                raise ModelDirError(
                    f"{model_dir}: holds a run with {section}.{key}="
                    f"{stored.get(section, {}).get(key)!r}, this command asks for {value!r}; "
                    f"use another model directory or the settings it was trained with")


def load_trained_model(model_dir: str, image_size: Optional[int] = None,
                       load_encoder: bool = True) -> TrainedModel:
    """Loads G, D, f(.) and, when there is one that fits them, E from a model directory.

    Args:
      model_dir: the directory.
      image_size: if given, the size the caller's images have; must match the model's.
      load_encoder: False loads the GAN only (as the encoder's own training does).

    Raises:
      ModelDirError: missing directory or files, or another image size.
    """
    if not os.path.isdir(model_dir):
        raise ModelDirError(f"{model_dir}: model directory not found (train one into it)")
    for name in (CONFIG_FILE, GENERATOR_FILE, DISCRIMINATOR_FILE):
        if not os.path.exists(os.path.join(model_dir, name)):
            raise ModelDirError(f"{model_dir}: {name} missing; is training finished?")
    config_path = os.path.join(model_dir, CONFIG_FILE)
    try:
        metadata = config_lib.read_json(config_path)
    except ValueError as e:
        raise ModelDirError(f"{e}; train into {model_dir} again") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("model"), dict):
        raise ModelDirError(f"{config_path}: expected a JSON object with a 'model' section "
                            "(image_size, latent_dim, base_filters), as training writes it")
    try:
        model_config = config_lib.from_dict(ModelConfig, metadata["model"])
    except (config_lib.ConfigError, TypeError) as e:
        raise ModelDirError(f"{config_path}: the 'model' section is unusable ({e})") from None
    if image_size is not None and image_size != model_config.image_size:
        raise ModelDirError(f"{model_dir}: model trained at image size {model_config.image_size}, "
                            f"asked to score {image_size}x{image_size} images")
    generator, discriminator, features = build_models(model_config)
    _load_weights(generator, os.path.join(model_dir, GENERATOR_FILE))
    _load_weights(discriminator, os.path.join(model_dir, DISCRIMINATOR_FILE))
    encoder = None
    encoder_path = os.path.join(model_dir, ENCODER_FILE)
    if load_encoder and os.path.exists(encoder_path):
        try:
            encoder_record = config_lib.read_json(os.path.join(model_dir, ENCODER_CONFIG_FILE))
        except (FileNotFoundError, ValueError) as e:
            raise ModelDirError(f"{e}; train again with the same settings to retrain the "
                                "encoder") from None
        if not isinstance(encoder_record, dict):
            encoder_record = {}
        if encoder_record.get("gan_fingerprint") == gan_fingerprint(generator, discriminator):
            encoder = build_encoder(model_config)
            _load_weights(encoder, encoder_path)
        else:
            # The GAN was trained further after E: E's guesses are for another G.
            log.warning("%s: the encoder was trained against other generator weights and is "
                        "ignored; train it again (the same settings)", model_dir)
    return TrainedModel(model_dir, model_config, generator, discriminator, features, metadata,
                        encoder)


def _load_weights(model: keras.Model, path: str) -> None:
    """Loads a weights file, naming it and saying what to do when it is damaged."""
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as e:
        raise ModelDirError(
            f"{path}: cannot be loaded ({type(e).__name__}: {str(e)[:200]}); the file is "
            "damaged, cut off or from another model. Train again into the same model directory "
            "with the same settings: it resumes from checkpoint.npz and rewrites it") from None


def gan_fingerprint(generator: Generator, discriminator: Discriminator) -> str:
    """A hash of G's and D's weights: says which GAN an encoder was trained against."""
    digest = hashlib.sha256()
    for variable in list(generator.weights) + list(discriminator.weights):
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()[:16]


def write_weights(model: keras.Model, path: str) -> None:
    with atomic_io.replace_file(path, suffix=".weights.h5") as temp:
        model.save_weights(temp)


# --------------------------------------------------------------------------
# The training entry point.


def record(model_dir: str, **sections) -> None:
    """Adds sections to the model's config.json."""
    path = os.path.join(model_dir, CONFIG_FILE)
    stored = config_lib.read_json(path)
    stored.update(sections)
    config_lib.write_json(path, stored)
