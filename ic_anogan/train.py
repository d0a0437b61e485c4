"""DCGAN training through `Model.fit`, with checkpoints, resume and TensorBoard.

`GANTrainer` is a `keras.Model` holding G and D with a custom `train_step`, in
the shape of the Keras GAN guide: loss trackers built in `__init__`, a
`metrics` property, `compile(d_optimizer=..., g_optimizer=...)`, two tapes and
a `SeedGenerator`. Losses are summed per example and divided by the global
batch size, so the same step is right under a `tf.distribute` strategy, where
the optimizers add up the replicas' gradients.

What the trainer adds to the study's DCGAN (G's moving average, the R1
penalty, DiffAugment, keeping the best epoch) is set by `TrainConfig`; with
`TrainConfig.as_study_dcgan()` it trains the study's DCGAN.

A checkpoint (checkpoints.py) is written atomically at the end of each
epoch; a killed run started again with the same command restores it and goes
on from the next epoch. What the model directory holds is model_dir.py's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from typing import Callable, Optional, Sequence

import keras
import tensorflow as tf

from ic_anogan import atomic_io, config as config_lib, data as data_lib, losses, training_plan
from ic_anogan import distribution, model_dir as model_dir_lib
from ic_anogan.augment import diff_augment
from ic_anogan.callbacks import EpochCheckpoint, SampleGrid, StopOnNonFiniteLoss
from ic_anogan.checkpoints import build_optimizers, restore_checkpoint
from ic_anogan.config import DataConfig, ModelConfig, SearchConfig, TrainConfig
from ic_anogan.image_set import DataError, ImageSet, describe
from ic_anogan.model_dir import (CHECKPOINT_FILE, CONFIG_FILE, DISCRIMINATOR_FILE,
                                 GENERATOR_FILE, HELDOUT_FILE, HISTORY_FILE, write_weights)
from ic_anogan.model_selection import BestWeights
from ic_anogan.models import Discriminator, Generator, build_models

log = logging.getLogger(__name__)


class GANTrainer(keras.Model):
    """Trains a DCGAN generator and discriminator with `fit`.

    The study's DCGAN is the trainer with every option off. The options,
    each set by TrainConfig (config.py says what they do):
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

@dataclasses.dataclass
class TrainResult:
    model_dir: str
    log_dir: str
    epochs_run: int
    history: dict
    train_images: int
    heldout: ImageSet
    seconds: float
    # The images G and D were trained on (the encoder trains on the same).
    train_set: Optional[ImageSet] = None
    plan: Optional[training_plan.TrainingPlan] = None
    # The epoch whose G and D were written (model_selection.py); the last
    # epoch when selection is off.
    kept_epoch: int = 0


def train(*, model_dir: str, log_dir: str, model_config: ModelConfig,
          train_config: TrainConfig, data_config: DataConfig = DataConfig(),
          search_config: SearchConfig = SearchConfig(),
          strategy: Optional[tf.distribute.Strategy] = None,
          extra_callbacks: Sequence[Callable[..., keras.callbacks.Callback]] = (),
          verbose: int = 1) -> TrainResult:
    """Trains the DCGAN on the good images of `data_config` and writes `model_dir`.

    Args:
      model_dir: where weights, config, checkpoint and held-out list go; a
        directory holding a checkpoint of the same run is resumed.
      log_dir: TensorBoard log directory.
      model_config, train_config: sizes and training settings.
      data_config: where the good images come from.
      search_config: λ and learning rate of the monitoring search (its steps
        come from train_config.monitor_search_steps).
      strategy: a tf.distribute strategy; default: TF's current one.
      extra_callbacks: factories called as f(trainer=..., heldout=..., log_dir=...)
        that return more callbacks (e.g. to stop a run at a given epoch).
      verbose: Keras progress bar verbosity.

    The model directory is created only once the data has loaded; a fresh
    run that stops before its first checkpoint removes what it wrote, so a
    refused run leaves no half model directory behind.

    Under a multi-worker strategy every worker runs this; only the chief
    writes `model_dir` and `log_dir` (distribution.py), and every worker
    resumes from the chief's checkpoint in `model_dir`.

    Raises:
      DataError, ModelDirError, NonFiniteLossError.
    """
    strategy = strategy or tf.distribute.get_strategy()
    with distribution.writable_dirs(strategy, model_dir, log_dir) as (write_dir, write_log_dir):
        return _train(model_dir=model_dir, write_dir=write_dir, log_dir=write_log_dir,
                      model_config=model_config, train_config=train_config,
                      data_config=data_config, search_config=search_config,
                      strategy=strategy, extra_callbacks=extra_callbacks, verbose=verbose)


def _train(*, model_dir, write_dir, log_dir, model_config, train_config, data_config,
           search_config, strategy, extra_callbacks, verbose) -> TrainResult:
    """`train` with the directory it reads (`model_dir`: the checkpoint and the run it
    resumes) apart from the one it writes (`write_dir`: the same, but on a worker)."""
    start = time.time()
    description = model_dir_lib.run_description(model_config, train_config, data_config)
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise model_dir_lib.ModelDirError(
            f"{model_dir}: exists and is a file; expected a model folder")
    created = not os.path.exists(write_dir)
    checkpoint_path = os.path.join(model_dir, CHECKPOINT_FILE)
    resuming = os.path.exists(checkpoint_path)
    if resuming:
        model_dir_lib.check_same_run(model_dir, description)

    images = data_lib.load_training_set(data_config, model_config.image_size,
                                        seed=train_config.seed)
    train_set, heldout = data_lib.split_holdout(images, train_config.validation_fraction,
                                                train_config.seed)
    global_batch = train_config.batch_size * strategy.num_replicas_in_sync
    if len(train_set) < global_batch:
        raise DataError(
            f"{data_config.data_dir or 'synthetic'}: {len(train_set)} training images after the "
            f"hold-out, fewer than one batch of {global_batch}; lower --batch_size")
    log.info("training on %s; holding out %d for validation and calibration",
             describe(train_set), len(heldout))
    plan = training_plan.plan_training(len(train_set), global_batch, model_config, train_config)
    log.info("training plan: %s", training_plan.describe(plan, len(train_set), global_batch))
    model_config = dataclasses.replace(model_config, base_filters=plan.base_filters)
    description["model"] = config_lib.to_dict(model_config)
    description["plan"] = dataclasses.asdict(plan)
    if resuming:
        model_dir_lib.check_same_run(model_dir, description)
    description["data"].update(train_images=len(train_set), heldout_images=len(heldout),
                               skipped_files=[p for p, _ in images.skipped])
    # Rewritten on resume too: only train.epochs may differ, and it should
    # say how long the model was finally trained.
    config_lib.write_json(os.path.join(write_dir, CONFIG_FILE), description)
    atomic_io.write_text(os.path.join(write_dir, HELDOUT_FILE),
                         "".join(i + "\n" for i in heldout.ids))
    written_checkpoint = os.path.join(write_dir, CHECKPOINT_FILE)
    try:
        return _fit_and_write(
            model_dir=model_dir, write_dir=write_dir, log_dir=log_dir,
            model_config=model_config,
            train_config=train_config, search_config=search_config, strategy=strategy,
            extra_callbacks=extra_callbacks, verbose=verbose, train_set=train_set,
            heldout=heldout, plan=plan, global_batch=global_batch, resuming=resuming,
            start=start)
    except BaseException:
        if not os.path.exists(written_checkpoint):
            # Not one epoch finished: nothing worth keeping, and a folder with
            # a config but no weights would look like a model.
            for name in (CONFIG_FILE, HELDOUT_FILE, HISTORY_FILE):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(write_dir, name))
            if created:
                with contextlib.suppress(OSError):
                    os.rmdir(write_dir)
        raise


def _fit_and_write(*, model_dir, write_dir, log_dir, model_config, train_config, search_config,
                   strategy, extra_callbacks, verbose, train_set, heldout, plan, global_batch,
                   resuming, start) -> TrainResult:
    """The GAN's fit and its weights; `train`'s second half, after the data is loaded."""
    checkpoint_path = os.path.join(model_dir, CHECKPOINT_FILE)
    written_checkpoint = os.path.join(write_dir, CHECKPOINT_FILE)
    monitoring = bool(plan.monitor_every_epochs and len(heldout))

    keras.utils.set_random_seed(train_config.seed)
    with strategy.scope():
        generator, discriminator, _ = build_models(model_config, seed=train_config.seed)
        ema_generator = None
        if train_config.ema_decay:
            ema_generator = Generator(model_config.image_size, model_config.latent_dim,
                                      model_config.base_filters, name="generator_average")
            for average, current in zip(ema_generator.weights, generator.weights):
                average.assign(current)
        best = (BestWeights(ema_generator or generator, discriminator)
                if train_config.keep_best and monitoring else None)
        trainer = GANTrainer(
            generator, discriminator, seed=train_config.seed, ema_generator=ema_generator,
            ema_decay=train_config.ema_decay,
            r1_gamma=train_config.r1_gamma if train_config.d_penalty == "r1" else 0.0,
            augment=plan.augment, best=best)
        d_optimizer, g_optimizer = make_optimizers(train_config)
        trainer.compile(d_optimizer=d_optimizer, g_optimizer=g_optimizer)
        build_optimizers(trainer)
    distribution.synchronize_batch_norm(strategy, generator, discriminator)
    initial_epoch = restore_checkpoint(trainer, checkpoint_path) if resuming else 0
    if resuming:
        log.info("resuming %s after epoch %d", model_dir, initial_epoch)

    history_path = os.path.join(write_dir, HISTORY_FILE)
    # Endless, so that an epoch can be more updates than one pass (small data).
    dataset = distribution.sharded(data_lib.training_stream(
        train_set.images, global_batch, seed=train_config.seed,
        start_batch=initial_epoch * plan.updates_per_epoch))
    callbacks = [StopOnNonFiniteLoss(written_checkpoint)]
    if monitoring:
        from ic_anogan.monitor import SearchMonitor  # the search is not needed otherwise
        monitor_config = dataclasses.replace(search_config, steps=train_config.monitor_search_steps,
                                             restarts=1, mode="search")
        # Before the checkpoint, so that the checkpoint holds this epoch's choice.
        callbacks.append(SearchMonitor(trainer.scored_generator, discriminator,
                                       heldout.images[:train_config.monitor_images], log_dir,
                                       plan.monitor_every_epochs, monitor_config, best=best))
    callbacks += [
        EpochCheckpoint(trainer, written_checkpoint, history_path),
        keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch", write_graph=False),
        SampleGrid(trainer.scored_generator, log_dir, seed=train_config.seed),
    ]
    callbacks += [factory(trainer=trainer, heldout=heldout, log_dir=log_dir)
                  for factory in extra_callbacks]
    if initial_epoch < plan.epochs:
        trainer.fit(dataset, epochs=plan.epochs, steps_per_epoch=plan.updates_per_epoch,
                    initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose,
                    shuffle=False)

    kept_epoch = max(plan.epochs, initial_epoch)
    kept_generator, kept_discriminator = trainer.scored_generator, discriminator
    if best is not None and best.kept_epoch:
        kept_epoch = best.kept_epoch
        kept_generator, kept_discriminator, _ = build_models(model_config)
        best.load_into(kept_generator, kept_discriminator)
    write_weights(kept_generator, os.path.join(write_dir, GENERATOR_FILE))
    write_weights(kept_discriminator, os.path.join(write_dir, DISCRIMINATOR_FILE))
    selection = {
        "kept_epoch": kept_epoch,
        "rule": ("lowest held-out reconstruction error" if best is not None and best.kept_epoch
                 else "last epoch"),
        "heldout_reconstruction_error": (best.kept_error if best is not None
                                         and best.kept_epoch else None),
        "generator": "average" if ema_generator is not None else "raw"}
    model_dir_lib.record(write_dir, selection=selection)
    log.info("kept the %s generator of epoch %d of %d (%s%s)", selection["generator"],
             kept_epoch, plan.epochs, selection["rule"],
             f": {best.kept_error:.4f}" if selection["heldout_reconstruction_error"] else "")
    history = config_lib.read_json(history_path) if os.path.exists(history_path) else {}
    return TrainResult(model_dir, log_dir, max(plan.epochs - initial_epoch, 0), history,
                       len(train_set), heldout, time.time() - start, train_set, plan,
                       kept_epoch)
