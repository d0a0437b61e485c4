"""The encoder trainer: a `keras.Model` whose `train_step` updates E with G and D frozen.

The loss per image is mean((x − G(E(x)))²) + κ·mean((f(x) − f(G(E(x))))²),
f = D's trunk (f-AnoGAN's izi_f, Schlegl et al. 2019): trackers for the loss
and both terms, `test_step` for the held-out good images (logged as val_*),
and a `BestWeights` of E kept by held-out loss. The callbacks here log
reconstructions and offer each epoch's held-out loss to that choice.
"""

from __future__ import annotations

import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from ic_anogan.models import losses
from ic_anogan.models.networks import Discriminator, Encoder, Generator
from ic_anogan.scoring.summaries import comparison_grid
from ic_anogan.training import distribution
from ic_anogan.training.model_selection import BestWeights


class EncoderTrainer(keras.Model):
    """Trains E with `fit`; G and D are used, never updated."""

    def __init__(self, encoder: Encoder, generator: Generator, discriminator: Discriminator,
                 feature_weight: float, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.generator = generator
        self.discriminator = discriminator
        self.feature_weight = float(feature_weight)
        # The best epoch so far by held-out loss, in variables, so that the
        # checkpoint holds it and a resumed run goes on comparing with it.
        self.best = BestWeights(encoder)
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
        """E's weights, its optimizer's state and the best epoch's weights, in a fixed order
        (the order of the checkpoints written before `BestWeights` kept them)."""
        return (list(self.encoder.weights) + list(self.encoder_optimizer.variables)
                + [self.best.error, self.best.epoch] + list(self.best.copies))

    def restore_best(self) -> Optional[int]:
        """Puts the best epoch's weights back into E; returns that epoch (None: no best yet)."""
        if not self.best.kept_epoch:
            return None
        self.best.load_into(self.encoder)
        return self.best.kept_epoch

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
    """After each epoch, keeps E's weights if its held-out loss is the lowest yet.

    Runs before the checkpoint callback, so the checkpoint always holds the
    best epoch as of the epoch it records.
    """

    def __init__(self, best: BestWeights):
        super().__init__()
        self.best = best

    def on_epoch_end(self, epoch, logs=None):
        if "val_loss" in (logs or {}):
            self.best.offer(epoch + 1, float(logs["val_loss"]))
