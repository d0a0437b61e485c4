"""The encoder E, its training, and the encoder and encoder_search scoring modes."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, TINY, tensorboard_tags

from ic_anogan.config import (ConfigError, EncoderConfig, ModelConfig, SearchConfig, TrainConfig,
                              search_config_for_mode)
from ic_anogan.models import losses, model_dir as model_dir_lib
from ic_anogan.models.networks import Encoder, build_encoder
from ic_anogan.scoring import calibration
from ic_anogan.scoring.search import LatentSearch
from ic_anogan.training import encoder as encoder_train, encoder_trainer, gan


def _images(n, seed=0, size=16):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 1)).astype(np.float32)


@pytest.mark.parametrize("size,latent,filters", [(16, 8, 4), (32, 5, 3), (64, 100, 8)])
def test_encoder_shapes_mirror_the_discriminator_trunk(size, latent, filters):
    from ic_anogan.models.networks import build_models
    config = ModelConfig(size, latent, filters)
    encoder = build_encoder(config, seed=0)
    _, discriminator, _ = build_models(config, seed=0)
    z = encoder(_images(3, size=size))
    assert z.shape == (3, latent) and np.all(np.isfinite(z))
    assert ([tuple(c.kernel.shape) for c in encoder.convs]
            == [tuple(c.kernel.shape) for c in discriminator.convs])
    assert [n is None for n in encoder.norms] == [n is None for n in discriminator.norms]
    clone = Encoder.from_config(encoder.get_config())
    assert clone.count_params() == encoder.count_params()


def test_encoder_terms_by_hand():
    x = tf.constant([[[[1.0], [0.0]], [[0.0], [-1.0]]]])  # one 2x2 image
    g = tf.zeros_like(x)
    fx = tf.constant([[1.0, 3.0]])
    fg = tf.constant([[0.0, 1.0]])
    image_residual, feature_residual = losses.encoder_terms(x, g, fx, fg)
    np.testing.assert_allclose(image_residual, [0.5])  # (1 + 0 + 0 + 1) / 4
    np.testing.assert_allclose(feature_residual, [2.5])  # (1 + 4) / 2
    np.testing.assert_allclose(losses.encoder_loss(image_residual, feature_residual, 2.0), [5.5])


def _vary(generator):
    """Scales G's kernels so its images vary with z (fresh N(0, 0.02) weights
    give near-constant images, on which no search or encoder has work to do)."""
    for variable in generator.trainable_weights:
        if "kernel" in variable.path:
            variable.assign(variable.numpy() * 8.0)
    return generator


def _trainer(tiny_models, feature_weight=1.0):
    generator, discriminator, _ = tiny_models
    encoder = build_encoder(ModelConfig(**TINY), seed=5)
    trainer = encoder_trainer.EncoderTrainer(encoder, generator, discriminator, feature_weight)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    return trainer


def test_one_train_step_changes_only_the_encoder(tiny_models):
    trainer = _trainer(tiny_models)
    generator, discriminator = trainer.generator, trainer.discriminator
    frozen = [v.numpy().copy() for v in generator.weights + discriminator.weights]
    before = [v.numpy().copy() for v in trainer.encoder.trainable_weights]
    history = trainer.fit(tf.data.Dataset.from_tensor_slices(_images(8)).batch(8), epochs=1,
                          verbose=0, shuffle=False).history
    assert np.isfinite(history["loss"][0])
    np.testing.assert_allclose(history["loss"][0],
                               history["image_residual"][0] + history["feature_residual"][0],
                               rtol=1e-5)
    # G's and D's weights, batch-norm statistics included, are untouched.
    for old, variable in zip(frozen, generator.weights + discriminator.weights):
        np.testing.assert_array_equal(old, variable.numpy(), err_msg=variable.path)
    for old, variable in zip(before, trainer.encoder.trainable_weights):
        assert not np.array_equal(old, variable.numpy()), variable.path


def test_encoder_training_lowers_the_held_out_loss(tiny_models):
    trainer = _trainer(tiny_models, feature_weight=0.5)
    # Images G can make: E can learn to find their z.
    generator = _vary(trainer.generator)
    z = np.random.default_rng(0).normal(size=(96, TINY["latent_dim"])).astype(np.float32)
    images = generator(z, training=False).numpy()
    train_set = tf.data.Dataset.from_tensor_slices(images[:64]).batch(16)
    heldout = tf.data.Dataset.from_tensor_slices(images[64:]).batch(16)
    first = trainer.evaluate(heldout, verbose=0, return_dict=True)["loss"]
    trainer.fit(train_set, epochs=30, verbose=0, validation_data=heldout, shuffle=False)
    assert trainer.evaluate(heldout, verbose=0, return_dict=True)["loss"] < 0.7 * first


def test_encoder_mode_is_encoder_search_with_no_steps(tiny_models):
    generator, _, features = tiny_models
    encoder = build_encoder(ModelConfig(**TINY), seed=2)
    x = _images(5, seed=3)
    alone = LatentSearch(generator, features, search_config_for_mode("encoder"),
                         encoder=encoder).score(x)
    zero_steps = LatentSearch(generator, features,
                              SearchConfig(mode="encoder_search", steps=0),
                              encoder=encoder).score(x)
    for key in alone:
        np.testing.assert_array_equal(alone[key].numpy(), zero_steps[key].numpy(), err_msg=key)
    np.testing.assert_allclose(alone["latent"], encoder(x, training=False), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("learning_rate", [0.05, 1.0, 30.0])
def test_encoder_search_never_scores_worse_than_the_encoder(tiny_models, learning_rate):
    generator, _, features = tiny_models
    _vary(generator)
    encoder = build_encoder(ModelConfig(**TINY), seed=2)
    x = _images(6, seed=4)
    alone = LatentSearch(generator, features, search_config_for_mode("encoder"),
                         encoder=encoder).score(x)["anomaly_score"].numpy()
    search = LatentSearch(generator, features,
                          SearchConfig(mode="encoder_search", steps=10,
                                       learning_rate=learning_rate), encoder=encoder)
    refined = search.score(x)["anomaly_score"].numpy()
    assert np.all(refined <= alone * (1 + 1e-6))
    # The loss at the last step alone, without keeping the start as a candidate.
    state = search.advance(x, search.start(x), 10)
    at_end = search.per_image_terms(x, features(x), state.z)[0].numpy()
    np.testing.assert_allclose(refined, np.minimum(at_end, alone), rtol=1e-5)
    if learning_rate == 0.05:
        assert np.all(refined < alone)  # small steps from E(x) do improve
    if learning_rate == 30.0:
        assert np.any(at_end > alone)  # huge steps overshoot: the guarantee is not vacuous


def test_encoder_search_restarts_hold_the_random_search(tiny_models):
    """With R = 2 the second candidate is the single-start search's start."""
    generator, _, features = tiny_models
    encoder = build_encoder(ModelConfig(**TINY), seed=2)
    x = _images(4, seed=5)
    random = LatentSearch(generator, features, SearchConfig(steps=8)).score(x)
    both = LatentSearch(generator, features,
                        SearchConfig(mode="encoder_search", steps=8, restarts=2),
                        encoder=encoder)
    start = both.start(x).z.numpy()
    np.testing.assert_allclose(start[0::2], encoder(x, training=False), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(start[1::2], np.tile(
        LatentSearch(generator, features, SearchConfig()).initial_latents().numpy(), [4, 1]))
    assert np.all(both.score(x)["anomaly_score"].numpy()
                  <= random["anomaly_score"].numpy() * (1 + 1e-5))


def test_modes_need_an_encoder_and_encoder_mode_takes_no_steps(tiny_models):
    generator, _, features = tiny_models
    with pytest.raises(ValueError, match="mode='encoder_search' needs an encoder"):
        LatentSearch(generator, features, SearchConfig(mode="encoder_search", steps=5))
    with pytest.raises(ConfigError, match="steps=0 and restarts=1 with mode 'encoder'"):
        SearchConfig(mode="encoder", steps=5)
    with pytest.raises(ConfigError, match="mode='fast': expected one of"):
        SearchConfig(mode="fast")
    assert search_config_for_mode("encoder_search").steps == 50  # chosen under map_max
    assert search_config_for_mode("encoder", SearchConfig(steps=9, restarts=3)).steps == 0
    assert search_config_for_mode("encoder_search", SearchConfig(steps=9), steps=4).steps == 4
    with pytest.raises(ConfigError, match="encoder.feature_weight"):
        EncoderConfig(feature_weight=-1.0)


def test_encoder_tensorboard_tags(trained_model_dir):
    log_dir = os.path.join(trained_model_dir["log_dir"], "encoder")
    scalars = {"epoch_loss", "epoch_image_residual", "epoch_feature_residual"}
    assert scalars <= tensorboard_tags(os.path.join(log_dir, "train"))
    assert scalars <= tensorboard_tags(os.path.join(log_dir, "validation"))
    assert tensorboard_tags(os.path.join(log_dir, "images")) == {"encoder/reconstructions"}
    history = json.load(open(os.path.join(trained_model_dir["model_dir"],
                                          model_dir_lib.ENCODER_HISTORY_FILE)))
    assert len(history["loss"]) == 2 and len(history["val_loss"]) == 2
    assert all(np.isfinite(history["val_loss"]))
    record = json.load(open(os.path.join(trained_model_dir["model_dir"],
                                         model_dir_lib.ENCODER_CONFIG_FILE)))
    assert record["kept_epoch"] == int(np.argmin(history["val_loss"])) + 1


def test_the_epoch_with_the_lowest_held_out_loss_is_kept(tiny_models):
    trainer = _trainer(tiny_models)
    trainer.encoder_optimizer.build(trainer.encoder.trainable_weights)
    weights = [w.numpy().copy() for w in trainer.encoder.weights]
    assert trainer.restore_best() is None  # nothing remembered yet
    assert trainer.best.offer(1, 0.5)
    for variable in trainer.encoder.trainable_weights:
        variable.assign(variable.numpy() + 1.0)
    assert not trainer.best.offer(2, 0.7)  # worse: not kept
    assert trainer.restore_best() == 1
    for old, variable in zip(weights, trainer.encoder.weights):
        np.testing.assert_array_equal(old, variable.numpy())
    # The best epoch is part of the checkpoint, so a resumed run keeps comparing with it.
    saved = trainer.checkpoint_variables()
    for variable in [trainer.best.error, trainer.best.epoch, *trainer.best.copies]:
        assert any(v is variable for v in saved)


def test_a_checkpoint_from_before_best_weights_resumes(tiny_models, tmp_path):
    """Encoder checkpoints written before the encoder kept its best epoch in BestWeights
    hold the best loss as float32 where BestWeights has float64: they still restore."""
    from ic_anogan.training import checkpoints
    trainer = _trainer(tiny_models)
    trainer.encoder_optimizer.build(trainer.encoder.trainable_weights)
    trainer.best.offer(3, 0.25)
    path = str(tmp_path / "encoder_checkpoint.npz")
    checkpoints.save_checkpoint(trainer, path, epoch=3)
    with np.load(path) as stored:
        arrays = dict(stored)
    index = next(i for i, v in enumerate(trainer.checkpoint_variables()) if v is trainer.best.error)
    arrays[f"v{index:04d}"] = np.float32(0.25)  # the old layout's dtype
    np.savez(path, **arrays)
    fresh = _trainer(tiny_models)
    fresh.encoder_optimizer.build(fresh.encoder.trainable_weights)
    assert checkpoints.restore_checkpoint(fresh, path) == 3
    assert fresh.best.kept_epoch == 3 and fresh.best.kept_error == 0.25
    for kept, weight in zip(fresh.best.copies, trainer.best.copies):
        np.testing.assert_array_equal(kept.numpy(), weight.numpy())


def _encoder_script(model_dir, log_dir, epochs, kill_after=None, feature_weight=1.0):
    return textwrap.dedent(f"""
        import os, keras
        from ic_anogan.training import encoder as encoder_train, gan
        from ic_anogan.config import DataConfig, EncoderConfig, ModelConfig, TrainConfig

        class Kill(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch + 1 == {kill_after!r}:
                    os._exit(3)  # like a kill -9 after this epoch's checkpoint

        result = gan.train(model_dir={model_dir!r}, log_dir={log_dir!r},
                             model_config=ModelConfig(**{TINY!r}),
                             train_config=TrainConfig(batch_size=8, epochs=1,
                                                      monitor_every_epochs=0),
                             data_config=DataConfig(synthetic_train_count=20), verbose=0)
        encoded = encoder_train.train_encoder(
            model_dir={model_dir!r}, log_dir={log_dir!r},
            encoder_config=EncoderConfig(epochs={epochs}, batch_size=8,
                                         feature_weight={feature_weight}),
            train_set=result.train_set, heldout=result.heldout, verbose=0,
            extra_callbacks=[lambda **_: Kill()])
        print("EPOCHS_RUN", encoded.epochs_run)
    """)


def _train_here(model_dir, log_dir, epochs, feature_weight=1.0):
    """What _encoder_script runs, in this process: the GAN (resumed, nothing left), then E."""
    from ic_anogan.config import DataConfig, ModelConfig
    result = gan.train(model_dir=model_dir, log_dir=log_dir, model_config=ModelConfig(**TINY),
                         train_config=TrainConfig(batch_size=8, epochs=1,
                                                  monitor_every_epochs=0),
                         data_config=DataConfig(synthetic_train_count=20), verbose=0)
    return encoder_train.train_encoder(
        model_dir=model_dir, log_dir=log_dir,
        encoder_config=EncoderConfig(epochs=epochs, batch_size=8, feature_weight=feature_weight),
        train_set=result.train_set, heldout=result.heldout, verbose=0)


def _run(script):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)


def test_killed_encoder_training_resumes(tmp_path):
    model_dir, log_dir = str(tmp_path / "model"), str(tmp_path / "logs")
    killed = _run(_encoder_script(model_dir, log_dir, epochs=3, kill_after=2))
    assert killed.returncode == 3, killed.stderr[-2000:]
    checkpoint = os.path.join(model_dir, model_dir_lib.ENCODER_CHECKPOINT_FILE)
    assert int(np.load(checkpoint)["epoch"]) == 2
    assert not os.path.exists(os.path.join(model_dir, model_dir_lib.ENCODER_FILE))

    # Only the kill needs its own process; the restart runs here.
    assert _train_here(model_dir, log_dir, epochs=3).epochs_run == 1  # only epoch 3 was left
    assert int(np.load(checkpoint)["epoch"]) == 3
    history = json.load(open(os.path.join(model_dir, model_dir_lib.ENCODER_HISTORY_FILE)))
    assert len(history["loss"]) == 3
    # The kept epoch is the best over the killed run's epochs and the resumed one.
    record = json.load(open(os.path.join(model_dir, model_dir_lib.ENCODER_CONFIG_FILE)))
    assert record["kept_epoch"] == int(np.argmin(history["val_loss"])) + 1
    model = model_dir_lib.load_trained_model(model_dir)
    assert model.encoder is not None

    # The same run with other encoder settings is refused, naming the setting.
    with pytest.raises(model_dir_lib.ModelDirError,
                       match="encoder.feature_weight=1.0, this command asks for 2.0"):
        _train_here(model_dir, log_dir, epochs=4, feature_weight=2.0)


def test_an_encoder_of_an_older_gan_is_ignored(trained_model_dir, tmp_path):
    import shutil
    model_dir = str(tmp_path / "model")
    shutil.copytree(trained_model_dir["model_dir"], model_dir)
    model = model_dir_lib.load_trained_model(model_dir)
    assert model.encoder is not None
    # Training the GAN further changes G: the stored encoder no longer fits it.
    kernel = model.generator.to_image.kernel
    kernel.assign(kernel.numpy() * 1.01)
    model_dir_lib.write_weights(model.generator,
                                os.path.join(model_dir, model_dir_lib.GENERATOR_FILE))
    reloaded = model_dir_lib.load_trained_model(model_dir)
    assert reloaded.encoder is None and reloaded.scoring_modes == ("search",)


def test_calibration_keeps_one_record_per_mode(tmp_path):
    model_dir = str(tmp_path)
    first = calibration.calibrate(np.arange(10.0), 90, SearchConfig(steps=5), "a")
    second = calibration.calibrate(np.arange(5.0), 90, search_config_for_mode("encoder"), "b")
    calibration.write(model_dir, first)
    calibration.write(model_dir, second)
    assert sorted(calibration.read_all(model_dir)) == ["encoder", "search"]
    assert calibration.read(model_dir)["source"] == "a"
    assert calibration.read(model_dir, "encoder")["source"] == "b"
    assert calibration.read(model_dir, "encoder_search") is None
    # A file written before modes existed reads as the search mode's record.
    legacy = first.to_dict()
    del legacy["search"]["mode"]
    json.dump(legacy, open(tmp_path / calibration.CALIBRATION_FILE, "w"))
    assert list(calibration.read_all(model_dir)) == ["search"]
    assert calibration.read(model_dir).mismatched_settings(SearchConfig(steps=5)) == []
