"""The DCGAN trainer: a `keras.Model` whose `train_step` updates D, then G.

`GANTrainer` holds G and D with a custom `train_step`, in the shape of the
Keras GAN guide: loss trackers built in `__init__`, a `metrics` property,
`compile(d_optimizer=..., g_optimizer=...)`, two tapes and a `SeedGenerator`.
Losses are summed per example and divided by the global batch size, so the
same step is right under a `tf.distribute` strategy, where the optimizers add
up the replicas' gradients.

What the trainer adds to the study's DCGAN (G's moving average, the R1
penalty, DiffAugment, keeping the best epoch) is set by `TrainConfig`; with
`TrainConfig.as_study_dcgan()` it trains the study's DCGAN.
"""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from ic_anogan.config import TrainConfig
from ic_anogan.models import losses
from ic_anogan.models.networks import Discriminator, Generator
from ic_anogan.training import distribution
from ic_anogan.training.augment import diff_augment
from ic_anogan.training.model_selection import BestWeights


class GANTrainer(keras.Model):
    """Trains a DCGAN generator and discriminator with `fit`.

    The study's DCGAN is the trainer with every option off. The options,
    each set by TrainConfig (config/training.py says what they do):
      - `ema_generator`: a second G whose weights follow G's as an
        exponential moving average after every G update;
      - `r1_gamma` > 0: the R1 penalty on D's gradient at real images;
      - `augment`: DiffAugment (augment.py) on every batch D sees, real and
        generated, in both steps;
      - `best`: a `BestWeights` that the monitor fills and the checkpoint keeps.
    """

    def __init__(self, generator: Generator, discriminator: Discriminator, seed: int = 0,
                 ema_generator: Optional[Generator] = None, ema_decay: float = 0.0,
                 r1_gamma: float = 0.0, augment: bool = False,
                 best: Optional[BestWeights] = None, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.ema_generator = ema_generator
        self.ema_decay = ema_decay
        self.r1_gamma = r1_gamma
        self.augment = augment
        self.best = best
        self.latent_dim = generator.latent_dim
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_real_tracker = keras.metrics.Mean(name="d_real")
        self.d_fake_tracker = keras.metrics.Mean(name="d_fake")
        self.r1_tracker = keras.metrics.Mean(name="r1_penalty")

    def compile(self, d_optimizer: keras.optimizers.Optimizer,
                g_optimizer: keras.optimizers.Optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer

    @property
    def metrics(self):
        trackers = [self.d_loss_tracker, self.g_loss_tracker, self.d_real_tracker,
                    self.d_fake_tracker]
        return trackers + ([self.r1_tracker] if self.r1_gamma else [])

    @property
    def scored_generator(self) -> Generator:
        """The G that scoring and export use: the average when there is one."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def checkpoint_variables(self) -> list:
        """Everything a resumed run needs, in a fixed order."""
        variables = (list(self.generator.weights) + list(self.discriminator.weights)
                     + list(self.d_optimizer.variables) + list(self.g_optimizer.variables)
                     + [self.seed_generator.state])
        if self.ema_generator is not None:
            variables += list(self.ema_generator.weights)
        if self.best is not None:
            variables += self.best.variables
        return variables

    def call(self, images, training=False):
        # fit() feeds batches of images; under a distribution strategy it
        # builds the model by calling it on one, so the trainer's own forward
        # pass is the discriminator's verdict on real images.
        return self.discriminator(images, training=training)

    def _noise(self, batch, replicas):
        """This replica's rows of the global batch's z: every replica draws the whole
        batch from the same generator state, so a run on N replicas draws the z that
        one device drawing the global batch would."""
        index = tf.distribute.get_replica_context().replica_id_in_sync_group
        z = keras.random.normal((batch * replicas, self.latent_dim), seed=self.seed_generator)
        return z[index * batch:(index + 1) * batch]

    def _seen_by_d(self, images):
        return diff_augment(images, self.seed_generator) if self.augment else images

    def train_step(self, real_images):
        batch = tf.shape(real_images)[0]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        global_batch = tf.cast(batch * replicas, tf.float32)

        z = self._noise(batch, replicas)
        with tf.GradientTape() as tape:
            fake_images = self.generator(z, training=True)
            real_input = self._seen_by_d(real_images)
            # Real and generated images pass D in separate batches, as in DCGAN,
            # so batch norm statistics never mix the two.
            if self.r1_gamma:
                with tf.GradientTape() as input_tape:
                    input_tape.watch(real_input)
                    real_logits = self.discriminator(real_input, training=True)
                    logit_sum = tf.reduce_sum(real_logits)
                input_gradients = input_tape.gradient(logit_sum, real_input)
                penalty = 0.5 * self.r1_gamma * tf.reduce_sum(tf.square(input_gradients),
                                                              axis=[1, 2, 3])
            else:
                real_logits = self.discriminator(real_input, training=True)
                penalty = tf.zeros([batch])
            fake_logits = self.discriminator(self._seen_by_d(fake_images), training=True)
            d_loss = (tf.reduce_sum(losses.discriminator_loss(real_logits, fake_logits))
                      + tf.reduce_sum(penalty)) / global_batch
        d_weights = self.discriminator.trainable_weights
        self.d_optimizer.apply(tape.gradient(d_loss, d_weights), d_weights)

        z = self._noise(batch, replicas)
        with tf.GradientTape() as tape:
            generated = self._seen_by_d(self.generator(z, training=True))
            fake_logits_g = self.discriminator(generated, training=True)
            g_loss = tf.reduce_sum(losses.generator_loss(fake_logits_g)) / global_batch
        g_weights = self.generator.trainable_weights
        self.g_optimizer.apply(tape.gradient(g_loss, g_weights), g_weights)
        if self.ema_generator is not None:
            self._update_average()

        # Trackers hold the per-replica mean; multiplying back by the replica
        # count reports the global-batch loss.
        self.d_loss_tracker.update_state(d_loss * tf.cast(replicas, tf.float32))
        self.g_loss_tracker.update_state(g_loss * tf.cast(replicas, tf.float32))
        self.d_real_tracker.update_state(tf.reduce_mean(tf.sigmoid(real_logits)))
        self.d_fake_tracker.update_state(tf.reduce_mean(tf.sigmoid(fake_logits)))
        if self.r1_gamma:
            self.r1_tracker.update_state(tf.reduce_mean(penalty))
        return distribution.reducible_logs({m.name: m.result() for m in self.metrics})

    def _update_average(self):
        # The decay warms up as in tf.train.ExponentialMovingAverage with
        # num_updates, so the first updates' random weights fade out fast
        # even when the run is short against 1 / (1 - decay).
        step = tf.cast(self.g_optimizer.iterations, tf.float32)
        decay = tf.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))
        # Batch norm's moving statistics are averaged with the weights, so
        # the average G's inference-mode normalisation follows its weights.
        for average, current in zip(self.ema_generator.weights, self.generator.weights):
            average.assign(decay * average + (1.0 - decay) * tf.cast(current, average.dtype))


def make_optimizers(train_config: TrainConfig) -> tuple:
    """Adam(2e-4, beta_1=0.5) for D and G, as in DCGAN."""
    return tuple(keras.optimizers.Adam(train_config.learning_rate, beta_1=train_config.beta_1,
                                       name=name) for name in ("d_adam", "g_adam"))
