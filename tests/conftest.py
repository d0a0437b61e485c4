"""Seeded fixtures on tiny shapes: 16x16 images, latent 8, 4 filters."""

import os
import subprocess
import sys

# Quiet TF's C++ logs in test output; must be set before TF is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(image_size=16, latent_dim=8, base_filters=4)


@pytest.fixture(scope="session")
def tiny_model_config():
    from ic_anogan.config import ModelConfig
    return ModelConfig(**TINY)


@pytest.fixture()
def tiny_models(tiny_model_config):
    from ic_anogan.models import build_models
    return build_models(tiny_model_config, seed=3)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory):
    """A tiny model trained for 2 epochs on synthetic packages, with a 2-epoch
    encoder, and calibrated in every mode."""
    from ic_anogan import encoder_train, scoring, train
    from ic_anogan.config import (EncoderConfig, ModelConfig, SearchConfig, TrainConfig,
                                  search_config_for_mode)
    root = tmp_path_factory.mktemp("trained")
    model_dir, log_dir = str(root / "model"), str(root / "logs")
    result = train.train(model_dir=model_dir, log_dir=log_dir, model_config=ModelConfig(**TINY),
                         train_config=TrainConfig(batch_size=8, epochs=2, monitor_every_epochs=1,
                                                  monitor_images=4, monitor_search_steps=3),
                         synthetic_count=40, verbose=0)
    encoded = encoder_train.train_encoder(
        model_dir=model_dir, log_dir=log_dir, encoder_config=EncoderConfig(epochs=2, batch_size=8),
        train_set=result.train_set, heldout=result.heldout, verbose=0)
    model = train.load_trained_model(model_dir)
    for mode in ("search", "encoder", "encoder_search"):
        scoring.calibrate(model, result.heldout,
                          search_config_for_mode(mode, SearchConfig(steps=5), steps=5), 99.0,
                          batch_size=8, source="test")
    return {"model_dir": model_dir, "log_dir": log_dir, "result": result, "encoder": encoded}


def tensorboard_tags(folder):
    """Every summary tag written to the event files in `folder`."""
    import glob
    import tensorflow as tf
    tags = set()
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def write_image(path, pixels, **save_args):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path, **save_args)
    return path


@pytest.fixture()
def rng():
    return np.random.default_rng(1234)


def run_main(script, *args, timeout=600):
    """Runs a binary in a subprocess (absl refuses duplicate flags in one process)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)
