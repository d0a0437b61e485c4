"""Training the encoder E: image -> z, with G and D frozen (f-AnoGAN's izi_f).

The study closes by saying AnoGAN's per-image search is too slow and points
at encoder-based GANs. f-AnoGAN (Schlegl et al. 2019) trains, after the GAN,
an encoder E so that G(E(x)) reconstructs x, with the loss

    mean((x − G(E(x)))²) + κ·mean((f(x) − f(G(E(x))))²),   f = D's trunk,

on good training images only, G and D frozen (batch norm in inference mode).
E then gives a latent in one forward pass (`encoder` mode), or a start close
to the answer for the usual search (`encoder_search` mode).

`EncoderTrainer` is a `keras.Model` with a custom `train_step` run by `fit`,
like the GAN's: trackers for the loss and both terms, `test_step` for the
held-out good images (logged as val_*), an atomic per-epoch checkpoint of E,
its optimizer and the epoch count, and resume of a killed run. E's held-out
loss swings from epoch to epoch, so by default the weights written are those
of the epoch with the lowest held-out loss (kept in the checkpoint too). The
checkpoint also records a fingerprint of the GAN it was trained against: if
the GAN is trained further, the old encoder is discarded, not resumed.

Files in the model directory: encoder.weights.h5 (E), encoder.json (settings,
GAN fingerprint, last metrics), encoder_checkpoint.npz, encoder_history.json.
TensorBoard: <log_dir>/encoder/{train,validation} scalars and
<log_dir>/encoder/images query / reconstruction / |difference| grids.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Callable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from ic_anogan import config as config_lib, data as data_lib, distribution, losses
from ic_anogan import model_dir as model_dir_lib
from ic_anogan.callbacks import EpochCheckpoint, StopOnNonFiniteLoss
from ic_anogan.checkpoints import restore_checkpoint
from ic_anogan.image_set import DataError, ImageSet
from ic_anogan.config import EncoderConfig
from ic_anogan.models import Discriminator, Encoder, Generator, build_encoder
from ic_anogan.summaries import comparison_grid

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "encoder_checkpoint.npz"
HISTORY_FILE = "encoder_history.json"
GRID_IMAGES = 8


class EncoderTrainer(keras.Model):
    """Trains E with `fit`; G and D are used, never updated."""

    def __init__(self, encoder: Encoder, generator: Generator, discriminator: Discriminator,
                 feature_weight: float, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.generator = generator
        self.discriminator = discriminator
        self.feature_weight = float(feature_weight)
        # The best epoch so far by held-out loss, kept in variables so that the
        # checkpoint holds it and a resumed run goes on comparing with it.
        self.best_loss = tf.Variable(np.inf, dtype=tf.float32, trainable=False, name="best_loss")
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
        self.best_weights = [tf.Variable(w, trainable=False, name=f"best_{i}")
                             for i, w in enumerate(encoder.get_weights())]
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.image_residual_tracker = keras.metrics.Mean(name="image_residual")
        self.feature_residual_tracker = keras.metrics.Mean(name="feature_residual")

    def compile(self, optimizer: keras.optimizers.Optimizer, **kwargs):
        super().compile(**kwargs)
        self.encoder_optimizer = optimizer

    @property
    def metrics(self):
        return [self.loss_tracker, self.image_residual_tracker, self.feature_residual_tracker]

    def checkpoint_variables(self) -> list:
        """E's weights, its optimizer's state and the best epoch's weights, in a fixed order."""
        return (list(self.encoder.weights) + list(self.encoder_optimizer.variables)
                + [self.best_loss, self.best_epoch] + list(self.best_weights))

    def remember_if_best(self, held_out_loss: float, epoch: int) -> bool:
        """Keeps E's current weights if `held_out_loss` is the lowest so far."""
        if not np.isfinite(held_out_loss) or held_out_loss >= float(self.best_loss.numpy()):
            return False
        self.best_loss.assign(held_out_loss)
        self.best_epoch.assign(epoch)
        for kept, weight in zip(self.best_weights, self.encoder.weights):
            kept.assign(weight)
        return True

    def restore_best(self) -> Optional[int]:
        """Puts the best epoch's weights back into E; returns that epoch (None: no best yet)."""
        if not np.isfinite(float(self.best_loss.numpy())):
            return None
        for kept, weight in zip(self.best_weights, self.encoder.weights):
            weight.assign(kept)
        return int(self.best_epoch.numpy())

    def call(self, images, training=False):
        return self.encoder(images, training=training)

    def _terms(self, images, training: bool):
        reconstructions = self.generator(self.encoder(images, training=training), training=False)
        image_residual, feature_residual = losses.encoder_terms(
            images, reconstructions, self.discriminator.features(images, training=False),
            self.discriminator.features(reconstructions, training=False))
        return image_residual, feature_residual

    def _update_trackers(self, image_residual, feature_residual, per_image_loss):
        self.loss_tracker.update_state(per_image_loss)
        self.image_residual_tracker.update_state(image_residual)
        self.feature_residual_tracker.update_state(feature_residual)
        return distribution.reducible_logs({m.name: m.result() for m in self.metrics})

    def train_step(self, images):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        global_batch = tf.cast(tf.shape(images)[0] * replicas, tf.float32)
        with tf.GradientTape() as tape:
            image_residual, feature_residual = self._terms(images, training=True)
            per_image = losses.encoder_loss(image_residual, feature_residual,
                                            self.feature_weight)
            # Summed and divided by the global batch: right under a strategy too.
            loss = tf.reduce_sum(per_image) / global_batch
        # Only E's weights get gradients: G and D stay as trained.
        weights = self.encoder.trainable_weights
        self.encoder_optimizer.apply(tape.gradient(loss, weights), weights)
        return self._update_trackers(image_residual, feature_residual, per_image)

    def test_step(self, images):
        image_residual, feature_residual = self._terms(images, training=False)
        per_image = losses.encoder_loss(image_residual, feature_residual, self.feature_weight)
        return self._update_trackers(image_residual, feature_residual, per_image)


class EncoderReconstructionGrid(keras.callbacks.Callback):
    """Logs query | G(E(x)) | |difference| for fixed held-out images after each epoch."""

    def __init__(self, encoder: Encoder, generator: Generator, images: np.ndarray, log_dir: str):
        super().__init__()
        self.encoder, self.generator = encoder, generator
        self.images = tf.constant(images, tf.float32)
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "encoder", "images"))

    def on_epoch_end(self, epoch, logs=None):
        reconstructions = self.generator(self.encoder(self.images, training=False),
                                         training=False).numpy()
        maps = np.abs(self.images.numpy() - reconstructions)
        with self.writer.as_default():
            tf.summary.image("encoder/reconstructions",
                             comparison_grid(self.images.numpy(), reconstructions, maps),
                             step=epoch + 1)
        self.writer.flush()


class KeepBestEpoch(keras.callbacks.Callback):
    """After each epoch, remembers E's weights if its held-out loss is the lowest yet.

    Runs before the checkpoint callback, so the checkpoint always holds the
    best epoch as of the epoch it records.
    """

    def __init__(self, trainer: EncoderTrainer):
        super().__init__()
        self.trainer = trainer

    def on_epoch_end(self, epoch, logs=None):
        if "val_loss" in (logs or {}):
            self.trainer.remember_if_best(float(logs["val_loss"]), epoch + 1)


@dataclasses.dataclass
class EncoderResult:
    encoder_path: str
    epochs_run: int
    history: dict
    seconds: float
    # The epoch whose weights were written (the best by held-out loss, or the last).
    kept_epoch: int = 0


def _describe(encoder_config: EncoderConfig, fingerprint: str, train_images: int,
              heldout_images: int) -> dict:
    return {"encoder": config_lib.to_dict(encoder_config), "gan_fingerprint": fingerprint,
            "train_images": train_images, "heldout_images": heldout_images}


def _resumable(model_dir: str, wanted: dict) -> bool:
    """True when the checkpoint belongs to this run; raises when it belongs to another.

    A checkpoint trained against another GAN is stale (the GAN was trained
    further): it is not an error, the encoder simply starts over.
    """
    checkpoint = os.path.join(model_dir, CHECKPOINT_FILE)
    record_path = os.path.join(model_dir, model_dir_lib.ENCODER_CONFIG_FILE)
    if not (os.path.exists(checkpoint) and os.path.exists(record_path)):
        return False
    stored = config_lib.read_json(record_path)
    if stored.get("gan_fingerprint") != wanted["gan_fingerprint"]:
        log.info("%s: the encoder checkpoint was trained against other GAN weights; "
                 "training the encoder from scratch", model_dir)
        return False
    for key, value in wanted["encoder"].items():
        if key != "epochs" and stored.get("encoder", {}).get(key) != value:
            raise model_dir_lib.ModelDirError(
                f"{model_dir}: holds an encoder run with encoder.{key}="
                f"{stored.get('encoder', {}).get(key)!r}, this command asks for {value!r}; "
                f"use the original encoder flags, or delete {CHECKPOINT_FILE} to start over")
    return True


def train_encoder(*, model_dir: str, log_dir: str, encoder_config: EncoderConfig,
                  train_set: ImageSet, heldout: ImageSet,
                  strategy: Optional[tf.distribute.Strategy] = None,
                  extra_callbacks: Sequence[Callable[..., keras.callbacks.Callback]] = (),
                  verbose: int = 1) -> EncoderResult:
    """Trains E against the GAN in `model_dir` and writes encoder.weights.h5 there.

    Args:
      model_dir: a directory written by `train.train` (G and D are read from it).
      log_dir: TensorBoard directory of the run (E logs under encoder/).
      encoder_config: epochs, κ and the optimizer.
      train_set: good images E learns from (the GAN's training images).
      heldout: good images for validation (may be empty).
      strategy: a tf.distribute strategy; default: TF's current one.
      extra_callbacks: factories f(trainer=..., log_dir=...) returning callbacks.
      verbose: Keras progress bar verbosity.

    Raises:
      model_dir_lib.ModelDirError: no trained GAN, or a checkpoint of other encoder settings.
      callbacks.NonFiniteLossError: the loss became NaN or infinite.
      data.DataError: fewer training images than one batch.
    """
    strategy = strategy or tf.distribute.get_strategy()
    with distribution.writable_dirs(strategy, model_dir, log_dir) as (write_dir, write_log_dir):
        return _train_encoder(model_dir=model_dir, write_dir=write_dir, log_dir=write_log_dir,
                              encoder_config=encoder_config, train_set=train_set,
                              heldout=heldout, strategy=strategy,
                              extra_callbacks=extra_callbacks, verbose=verbose)


def _train_encoder(*, model_dir, write_dir, log_dir, encoder_config, train_set, heldout,
                   strategy, extra_callbacks, verbose) -> EncoderResult:
    """`train_encoder` reading the GAN and the run it resumes from `model_dir` and writing
    to `write_dir` (the same, but on a worker: distribution.py)."""
    start = time.time()
    global_batch = encoder_config.batch_size * strategy.num_replicas_in_sync
    if len(train_set) < global_batch:
        raise DataError(f"{len(train_set)} training images, fewer than one encoder "
                                 f"batch of {global_batch}; lower --encoder_batch_size")
    keras.utils.set_random_seed(encoder_config.seed)
    with strategy.scope():
        gan = model_dir_lib.load_trained_model(model_dir, load_encoder=False)
        encoder = build_encoder(gan.model_config, seed=encoder_config.seed)
        trainer = EncoderTrainer(encoder, gan.generator, gan.discriminator,
                                 encoder_config.feature_weight)
        trainer.compile(optimizer=keras.optimizers.Adam(
            encoder_config.learning_rate, beta_1=encoder_config.beta_1, name="e_adam"))
        trainer.encoder_optimizer.build(encoder.trainable_weights)
    distribution.synchronize_batch_norm(strategy, encoder)
    description = _describe(encoder_config,
                            model_dir_lib.gan_fingerprint(gan.generator, gan.discriminator),
                            len(train_set), len(heldout))
    checkpoint_path = os.path.join(write_dir, CHECKPOINT_FILE)
    history_path = os.path.join(write_dir, HISTORY_FILE)
    record_path = os.path.join(write_dir, model_dir_lib.ENCODER_CONFIG_FILE)
    initial_epoch = 0
    if _resumable(model_dir, description):
        initial_epoch = restore_checkpoint(trainer, os.path.join(model_dir, CHECKPOINT_FILE))
        log.info("resuming the encoder after epoch %d", initial_epoch)
    else:
        # An older encoder (other settings' epochs, or another GAN) must not
        # survive beside the new record.
        encoder_path = os.path.join(write_dir, model_dir_lib.ENCODER_FILE)
        for stale in (checkpoint_path, history_path, encoder_path):
            if os.path.exists(stale):
                os.remove(stale)
    # Written before the first epoch so a killed run can check what it resumes.
    config_lib.write_json(record_path, description)

    # An epoch is one pass, but at least MIN_UPDATES_PER_EPOCH updates, as for
    # the GAN: 20 passes over a few hundred images are only about 100 updates.
    updates_per_epoch = max(len(train_set) // global_batch, config_lib.MIN_UPDATES_PER_EPOCH)
    dataset = distribution.sharded(data_lib.training_stream(
        train_set.images, global_batch, seed=encoder_config.seed,
        start_batch=initial_epoch * updates_per_epoch))
    # Every held-out image counts in validation, the last partial batch too.
    validation = (distribution.sharded(data_lib.make_dataset(heldout.images, global_batch))
                  if len(heldout) else None)
    keep_best = encoder_config.keep_best and len(heldout) > 0
    callbacks = [
        StopOnNonFiniteLoss(checkpoint_path, names=("loss",),
                                  advice="Lower --encoder_learning_rate."),
        *([KeepBestEpoch(trainer)] if keep_best else []),
        EpochCheckpoint(trainer, checkpoint_path, history_path),
        keras.callbacks.TensorBoard(log_dir=os.path.join(log_dir, "encoder"),
                                    update_freq="epoch", write_graph=False),
    ]
    if len(heldout):
        callbacks.append(EncoderReconstructionGrid(encoder, gan.generator,
                                                   heldout.images[:GRID_IMAGES], log_dir))
    callbacks += [factory(trainer=trainer, log_dir=log_dir) for factory in extra_callbacks]
    if initial_epoch < encoder_config.epochs:
        trainer.fit(dataset, epochs=encoder_config.epochs, steps_per_epoch=updates_per_epoch,
                    initial_epoch=initial_epoch, validation_data=validation, callbacks=callbacks,
                    verbose=verbose, shuffle=False)
    kept_epoch = (trainer.restore_best() if keep_best else None) or encoder_config.epochs
    encoder_path = os.path.join(write_dir, model_dir_lib.ENCODER_FILE)
    model_dir_lib.write_weights(encoder, encoder_path)
    history = config_lib.read_json(history_path) if os.path.exists(history_path) else {}
    description["last_epoch"] = {k: v[-1] for k, v in history.items() if v}
    description["kept_epoch"] = kept_epoch
    description["kept_epoch_metrics"] = {k: v[kept_epoch - 1] for k, v in history.items()
                                         if len(v) >= kept_epoch}
    config_lib.write_json(record_path, description)
    return EncoderResult(os.path.join(model_dir, model_dir_lib.ENCODER_FILE),
                         max(encoder_config.epochs - initial_epoch, 0), history,
                         time.time() - start, kept_epoch)
