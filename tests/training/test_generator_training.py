"""The GAN's additions to the study's DCGAN: weight average, R1, DiffAugment,
model selection and the data-size plan."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY

from ic_anogan.config import (ConfigError, DataConfig, ModelConfig, SearchConfig, SearchRuntime,
                              TrainConfig)
from ic_anogan.models import folded, model_dir as model_dir_lib
from ic_anogan.models.networks import Generator, build_models
from ic_anogan.scoring.search import LatentSearch
from ic_anogan.training import augment, checkpoints, gan, gan_trainer, training_plan


def _trainer(**options):
    generator, discriminator, _ = build_models(ModelConfig(**TINY), seed=0)
    average = None
    if options.pop("average", False):
        average = Generator(**TINY, name="generator_average")
        for a, w in zip(average.weights, generator.weights):
            a.assign(w)
    trainer = gan_trainer.GANTrainer(generator, discriminator, seed=0, ema_generator=average,
                               **options)
    trainer.compile(*gan_trainer.make_optimizers(TrainConfig()))
    checkpoints.build_optimizers(trainer)
    return trainer


def _batch(seed=1):
    return tf.random.stateless_uniform([8, 16, 16, 1], seed=[seed, 2], minval=-1, maxval=1)


def _values(weights):
    return [np.array(w) for w in weights]


class _Capture(keras.callbacks.Callback):
    def __init__(self, trainer):
        super().__init__()
        self.trainer = trainer


def _train(tmp_path, name="model", train_config=None, **kwargs):
    captured = []

    def capture(trainer, **_):
        captured.append(_Capture(trainer))
        return captured[-1]

    train_config = train_config or TrainConfig(batch_size=8, epochs=2, monitor_every_epochs=0)
    result = gan.train(model_dir=str(tmp_path / name), log_dir=str(tmp_path / f"{name}_logs"),
                         model_config=ModelConfig(**TINY), train_config=train_config,
                         data_config=DataConfig(synthetic_train_count=40), verbose=0,
                         extra_callbacks=[capture] + kwargs.pop("extra_callbacks", []),
                         **kwargs)
    return result, captured[0].trainer


# --- the moving average of G ------------------------------------------------

def test_average_follows_the_warmed_up_decay():
    trainer = _trainer(average=True, ema_decay=0.999)
    before = _values(trainer.generator.weights)
    trainer.train_step(_batch())
    after = _values(trainer.generator.weights)
    decay = min(0.999, 2.0 / 11.0)  # one update done: (1 + t) / (10 + t) at t = 1
    for average, b, a in zip(trainer.ema_generator.weights, before, after):
        np.testing.assert_allclose(np.array(average), decay * b + (1 - decay) * a,
                                   rtol=1e-5, atol=1e-7)


def test_scoring_loads_the_average_not_the_raw_weights(tmp_path):
    _, trainer = _train(tmp_path, train_config=TrainConfig(
        batch_size=8, epochs=2, monitor_every_epochs=0, keep_best=False))
    loaded = model_dir_lib.load_trained_model(str(tmp_path / "model")).generator
    for stored, average in zip(loaded.weights, trainer.ema_generator.weights):
        np.testing.assert_array_equal(np.array(stored), np.array(average))
    differing = [not np.allclose(np.array(s), np.array(r))
                 for s, r in zip(loaded.trainable_weights, trainer.generator.trainable_weights)]
    assert all(differing)
    stored = json.load(open(tmp_path / "model" / "config.json"))
    assert stored["selection"]["generator"] == "average"


def test_study_dcgan_writes_the_raw_generator(tmp_path):
    _, trainer = _train(tmp_path, train_config=TrainConfig(
        batch_size=8, epochs=1, monitor_every_epochs=0).as_study_dcgan())
    assert trainer.ema_generator is None and not trainer.augment and not trainer.r1_gamma
    loaded = model_dir_lib.load_trained_model(str(tmp_path / "model")).generator
    for stored, raw in zip(loaded.weights, trainer.generator.weights):
        np.testing.assert_array_equal(np.array(stored), np.array(raw))


# --- R1 -------------------------------------------------------------------------

def test_r1_penalty_changes_the_discriminator_step():
    plain, penalised = _trainer(), _trainer(r1_gamma=10.0)
    logs = penalised.train_step(_batch())
    assert "r1_penalty" not in plain.train_step(_batch())
    assert float(logs["r1_penalty"]) > 0
    differing = [not np.allclose(np.array(a), np.array(b)) for a, b in zip(
        plain.discriminator.trainable_weights, penalised.discriminator.trainable_weights)]
    # Adam's first step is about lr·sign(gradient): only sign changes show.
    assert any(differing)


def test_folded_search_stays_exact_with_r1_and_the_average(tmp_path):
    _train(tmp_path, train_config=TrainConfig(batch_size=8, epochs=2, monitor_every_epochs=0,
                                              r1_gamma=1.0, augment=True))
    model = model_dir_lib.load_trained_model(str(tmp_path / "model"))
    z = tf.random.stateless_normal([4, TINY["latent_dim"]], seed=[3, 4])
    np.testing.assert_allclose(folded.fold_generator(model.generator)(z),
                               model.generator(z, training=False), atol=1e-5)
    images = model.generator(z, training=False)
    np.testing.assert_allclose(folded.fold_features(model.discriminator)(images),
                               model.discriminator.features(images, training=False), atol=1e-5)
    scores = [LatentSearch(model.generator, model.features,
                           SearchConfig(steps=3),
                           runtime=SearchRuntime(fold_batch_norm=fold)).score(images)
              for fold in (True, False)]
    np.testing.assert_allclose(scores[0]["anomaly_score"], scores[1]["anomaly_score"],
                               rtol=1e-4)


# --- DiffAugment ---------------------------------------------------------------

def test_translation_shifts_each_image_by_at_most_an_eighth():
    images = tf.random.stateless_uniform([6, 16, 16, 1], seed=[5, 6], minval=0.1, maxval=1)
    shifted = augment.translate(images, keras.random.SeedGenerator(0)).numpy()
    padded = np.pad(images.numpy(), [(0, 0), (3, 3), (3, 3), (0, 0)])
    found = []
    for i in range(6):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(shifted[i], padded[i, 3 + dy:19 + dy, 3 + dx:19 + dx])]
        assert len(matches) == 1, f"image {i} is not a shift of its input"
        found.append(matches[0])
    assert len(set(found)) > 1  # each image draws its own offset


def test_cutout_zeroes_one_square_of_half_the_side():
    ones = tf.ones([16, 16, 16, 1])
    holes = augment.cutout(ones, keras.random.SeedGenerator(0)).numpy()[..., 0] == 0
    for hole in holes:
        rows, cols = np.flatnonzero(hole.any(1)), np.flatnonzero(hole.any(0))
        assert 0 < hole.sum() <= 64 and len(rows) <= 8 and len(cols) <= 8
        # one filled rectangle, clipped at the border
        assert hole.sum() == len(rows) * len(cols)
        assert np.ptp(rows) + 1 == len(rows) and np.ptp(cols) + 1 == len(cols)


def test_augmentation_is_differentiable_to_the_generator():
    generator, _, _ = build_models(ModelConfig(**TINY), seed=0)
    z = tf.random.stateless_normal([4, TINY["latent_dim"]], seed=[1, 1])
    with tf.GradientTape() as tape:
        seen = augment.diff_augment(generator(z, training=True), keras.random.SeedGenerator(1))
        total = tf.reduce_sum(seen)
    gradients = tape.gradient(total, generator.trainable_weights)
    assert all(g is not None and np.abs(np.array(g)).sum() > 0 for g in gradients)


def test_trainer_augments_real_and_generated_batches_alike(monkeypatch):
    seen = []
    original = augment.diff_augment

    def spy(images, seed_generator):
        seen.append(np.array(images))
        return original(images, seed_generator)

    monkeypatch.setattr(gan_trainer, "diff_augment", spy)
    real = _batch()
    _trainer(augment=True).train_step(real)
    # D's step: the real batch and a generated one; G's step: a generated one.
    assert len(seen) == 3
    np.testing.assert_array_equal(seen[0], np.array(real))
    assert all(s.shape == real.shape and not np.array_equal(s, seen[0]) for s in seen[1:])
    seen.clear()
    _trainer(augment=False).train_step(real)
    assert not seen


def test_scoring_never_augments(monkeypatch, tiny_models):
    def refuse(*_):
        raise AssertionError("augmentation reached the search")

    monkeypatch.setattr(augment, "diff_augment", refuse)
    monkeypatch.setattr(gan_trainer, "diff_augment", refuse)
    generator, _, features = tiny_models
    images = generator(tf.random.stateless_normal([2, TINY["latent_dim"]], seed=[2, 2]))
    outputs = LatentSearch(generator, features, SearchConfig(steps=2)).score(images)
    assert np.isfinite(outputs["anomaly_score"]).all()


# --- model selection --------------------------------------------------------------

class _BreakGenerator(keras.callbacks.Callback):
    """Zeroes the last layer of the raw and the averaged G after every update, so
    every later evaluation reconstructs a flat image: worse than any kept epoch."""

    def __init__(self, trainer):
        super().__init__()
        self.trainer = trainer

    def on_train_batch_end(self, batch, logs=None):
        for generator in (self.trainer.generator, self.trainer.scored_generator):
            kernel = generator.to_image.kernel
            kernel.assign(np.zeros(kernel.shape, np.float32))


class _Stop(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt  # after epoch 2's checkpoint, like a kill


def test_kept_epoch_is_recorded_and_survives_a_resume(tmp_path):
    config = TrainConfig(batch_size=8, epochs=4, monitor_every_epochs=1, monitor_images=4,
                         monitor_search_steps=3)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, train_config=config, extra_callbacks=[lambda **_: _Stop()])
    with np.load(tmp_path / "model" / "checkpoint.npz") as stored:
        names = list(stored["names"])
        kept_before = int(stored[f"v{names.index('best_epoch:0'):04d}"])
        best = [stored[f"v{i:04d}"] for i, n in enumerate(names) if n.startswith("best_weight")]
    assert kept_before in (1, 2)

    result, trainer = _train(tmp_path, train_config=config, extra_callbacks=[
        lambda trainer, **_: _BreakGenerator(trainer)])
    assert result.epochs_run == 2 and result.kept_epoch == kept_before
    selection = json.load(open(tmp_path / "model" / "config.json"))["selection"]
    assert selection["kept_epoch"] == kept_before
    assert selection["rule"] == "lowest held-out reconstruction error"
    model = model_dir_lib.load_trained_model(str(tmp_path / "model"))
    stored_weights = list(model.generator.weights) + list(model.discriminator.weights)
    assert len(stored_weights) == len(best)
    for weight, kept in zip(stored_weights, best):
        np.testing.assert_array_equal(np.array(weight), kept)


def test_without_the_monitor_the_last_epoch_is_kept(tmp_path):
    result, _ = _train(tmp_path)
    selection = json.load(open(tmp_path / "model" / "config.json"))["selection"]
    assert result.kept_epoch == 2 and selection["kept_epoch"] == 2
    assert selection["rule"] == "last epoch"


# --- the data-size plan ----------------------------------------------------------

def test_plan_fits_the_data_size():
    small = training_plan.plan_training(400, 64, ModelConfig(base_filters=None), TrainConfig())
    assert (small.base_filters, small.augment) == (32, False)
    # 6 batches per pass, so epochs of at least 50 updates, 3000 updates in all.
    assert small.updates_per_epoch == 50 and small.epochs == 60 and small.updates == 3000
    assert small.monitor_every_epochs == 6
    large = training_plan.plan_training(3000, 64, ModelConfig(base_filters=None), TrainConfig())
    assert (large.base_filters, large.augment) == (64, False)
    assert large.updates_per_epoch == 50 and large.epochs == 60


def test_plan_lets_given_values_win():
    plan = training_plan.plan_training(
        400, 64, ModelConfig(base_filters=16),
        TrainConfig(epochs=30, augment=False, monitor_every_epochs=5))
    assert (plan.base_filters, plan.augment, plan.epochs, plan.monitor_every_epochs) == (
        16, False, 30, 5)
    assert plan.updates_per_epoch == 6  # one pass of 400 images in batches of 64
    assert plan.reasons["base_filters"] == "given" and plan.reasons["augment"] == "given"
    plan = training_plan.plan_training(3000, 64, ModelConfig(), TrainConfig(updates=470))
    assert (plan.epochs, plan.updates_per_epoch) == (9, 53)  # 477: whole epochs, >= 470


def test_plan_is_stored_with_the_model(tmp_path):
    _train(tmp_path, train_config=TrainConfig(batch_size=8, updates=12, monitor_every_epochs=0),
           )
    stored = json.load(open(tmp_path / "model" / "config.json"))
    assert stored["plan"]["augment"] is False and stored["plan"]["epochs"] == 1
    assert stored["plan"]["updates_per_epoch"] == 12
    assert stored["plan"]["reasons"]["base_filters"] == "given"


def test_length_is_epochs_or_updates_not_both():
    with pytest.raises(ConfigError, match="both set the training length; give one"):
        TrainConfig(epochs=3, updates=100)
    with pytest.raises(ConfigError, match="ema_decay=1.0"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ConfigError, match="d_penalty='wgan'"):
        TrainConfig(d_penalty="wgan")
