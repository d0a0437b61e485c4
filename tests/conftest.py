"""Seeded fixtures on tiny shapes: 16x16 images, latent 8, 4 filters."""

import os
import subprocess
import sys

# Quiet TF's C++ logs in test output; must be set before TF is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The suite runs as a user's program does: the package is imported before
# TensorFlow, so oneDNN is on wherever the package turns it on (runtime.py).
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import ic_anogan  # noqa: E402,F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(image_size=16, latent_dim=8, base_filters=4)


@pytest.fixture(scope="session")
def tiny_model_config():
    from ic_anogan.config import ModelConfig
    return ModelConfig(**TINY)


@pytest.fixture()
def tiny_models(tiny_model_config):
    from ic_anogan.models.networks import build_models
    return build_models(tiny_model_config, seed=3)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory):
    """A tiny model trained for 2 epochs on synthetic packages, with a 2-epoch
    encoder, and calibrated in every mode (Γ = 5), through the library's one call."""
    from ic_anogan.config import (CalibrationConfig, DataConfig, EncoderConfig, ModelConfig,
                                  SearchConfig, TrainConfig)
    from ic_anogan.jobs import train_job
    root = tmp_path_factory.mktemp("trained")
    model_dir, log_dir = str(root / "model"), str(root / "logs")
    result = train_job.train_and_calibrate(
        model_dir=model_dir, log_dir=log_dir, model_config=ModelConfig(**TINY),
        train_config=TrainConfig(batch_size=8, epochs=2, monitor_every_epochs=1,
                                 monitor_images=4, monitor_search_steps=3),
        data_config=DataConfig(synthetic_train_count=40), search_config=SearchConfig(steps=5),
        encoder_config=EncoderConfig(epochs=2, batch_size=8),
        calibration_config=CalibrationConfig(encoder_search_steps=5, batch_size=8), verbose=0)
    return {"model_dir": model_dir, "log_dir": log_dir, "result": result.gan,
            "encoder": result.encoder}


@pytest.fixture(scope="session")
def exported(trained_model_dir, tmp_path_factory):
    """The search mode (Γ = 5) with its calibrated study threshold, warm-up for batch
    sizes 1 and 2; tests that change it work on a copy."""
    from ic_anogan.config import SearchConfig
    from ic_anogan.models import model_dir as model_dir_lib
    from ic_anogan.scoring import calibration
    from ic_anogan.serving import export
    model = model_dir_lib.load_trained_model(trained_model_dir["model_dir"])
    threshold = calibration.read(trained_model_dir["model_dir"])["threshold"]
    base = str(tmp_path_factory.mktemp("export"))
    path = export.export_saved_model(model, base, SearchConfig(steps=5), threshold,
                                     warmup_batch_sizes=(1, 2))
    import tensorflow as tf
    return {"model": model, "path": path, "base": base, "threshold": threshold,
            "loaded": tf.saved_model.load(path)}


def export_from_before_the_map_scores(exported_path, path):
    """A copy of a search-mode export at `path` whose settings are as an export written
    before the map scores had them: no image_score, no outputs list."""
    import json
    import shutil

    from ic_anogan.serving import signatures
    shutil.copytree(exported_path, path)
    asset = os.path.join(path, "assets", signatures.SETTINGS_ASSET)
    settings = json.load(open(asset))
    settings.pop("image_score")
    for values in settings["modes"].values():
        values.pop("image_score"), values.pop("outputs")
    with open(asset, "w") as f:
        json.dump(settings, f)
    return path


MODES = ("encoder_search", "search", "encoder")


@pytest.fixture(scope="session")
def exported_modes(trained_model_dir, exported, tmp_path_factory):
    """Every mode exported through the library's one call, each with its calibrated search,
    map statistics and map_max threshold; encoder_search is the default."""
    import tensorflow as tf

    from ic_anogan.jobs import score_job
    from ic_anogan.jobs.score_request import ScoreRequest
    from ic_anogan.models import model_dir as model_dir_lib
    from ic_anogan.scoring import calibration
    model_dir = trained_model_dir["model_dir"]
    model = model_dir_lib.load_trained_model(model_dir)
    records = calibration.read_all(model_dir)
    base = tmp_path_factory.mktemp("export_modes")
    path = score_job.run(ScoreRequest(model_dir=model_dir, modes=list(MODES),
                                           export_dir=str(base / "serving"))).export_path
    assert path == str(base / "serving" / "1")
    return {"model": model, "path": path, "loaded": tf.saved_model.load(path),
            "configs": {m: records[m].search_config for m in MODES},
            "statistics": {m: records[m].map_statistics for m in MODES},
            "thresholds": {m: records[m].thresholds["map_max"] for m in MODES},
            # An export of the search mode only, to be asked for a mode it lacks.
            "search_only": exported["path"]}


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


def run_main(script, *args, timeout=600, unset=(), extra_env=None):
    """Runs a binary in a subprocess (absl refuses duplicate flags in one process);
    `unset` names environment variables the binary must not inherit, `extra_env`
    adds some."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    for name in unset:
        env.pop(name, None)
    env.update(extra_env or {})
    return subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)
