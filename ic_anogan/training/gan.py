"""The GAN's training run: data, plan, fit, and the kept weights in the model directory.

`train` loads the good images, holds some out, plans the run
(training_plan.py), builds `GANTrainer` (gan_trainer.py) under the strategy
and fits it through fit_loop.py: a checkpoint written atomically at the end
of each epoch, and a killed run started again with the same command goes on
from the next epoch. What the model directory holds is model_dir.py's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Callable, Optional, Sequence

import keras
import tensorflow as tf

from ic_anogan import config as config_lib
from ic_anogan.config import DataConfig, Mode, ModelConfig, SearchConfig, TrainConfig
from ic_anogan.core import atomic_io
from ic_anogan.data import loading
from ic_anogan.data.image_set import DataError, ImageSet, describe
from ic_anogan.models import model_dir as model_dir_lib
from ic_anogan.models.model_dir import (CHECKPOINT_FILE, CONFIG_FILE, DISCRIMINATOR_FILE,
                                        GENERATOR_FILE, HELDOUT_FILE, HISTORY_FILE, write_weights)
from ic_anogan.models.networks import Generator, build_models
from ic_anogan.training import distribution, training_plan
from ic_anogan.training.callbacks import SampleGrid
from ic_anogan.training.checkpoints import build_optimizers
from ic_anogan.training.fit_loop import FitFiles, RunDirs, fit, rollback_unless_checkpointed
from ic_anogan.training.gan_trainer import GANTrainer, make_optimizers
from ic_anogan.training.model_selection import BestWeights

log = logging.getLogger(__name__)

FILES = FitFiles(CHECKPOINT_FILE, HISTORY_FILE)


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
        return _train(RunDirs(model_dir, write_dir, write_log_dir), model_config=model_config,
                      train_config=train_config, data_config=data_config,
                      search_config=search_config, strategy=strategy,
                      extra_callbacks=extra_callbacks, verbose=verbose)


def _train(dirs: RunDirs, *, model_config, train_config, data_config, search_config, strategy,
           extra_callbacks, verbose) -> TrainResult:
    """`train` with the directory it reads (dirs.model_dir: the checkpoint and the run it
    resumes) apart from the one it writes (dirs.write_dir: the same, but on a worker)."""
    start = time.time()
    model_dir, write_dir = dirs.model_dir, dirs.write_dir
    description = model_dir_lib.run_description(model_config, train_config, data_config)
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise model_dir_lib.ModelDirError(
            f"{model_dir}: exists and is a file; expected a model folder")
    created = not os.path.exists(write_dir)
    resuming = os.path.exists(os.path.join(model_dir, CHECKPOINT_FILE))
    if resuming:
        model_dir_lib.check_same_run(model_dir, description)

    images = loading.load_training_set(data_config, model_config.image_size,
                                        seed=train_config.seed)
    train_set, heldout = loading.split_holdout(images, train_config.validation_fraction,
                                                train_config.seed)
    global_batch = train_config.batch_size * strategy.num_replicas_in_sync
    if len(train_set) < global_batch:
        raise DataError(
            f"{data_config.data_dir or 'synthetic'}: {len(train_set)} training images after the "
            f"hold-out, fewer than one batch of {global_batch}; lower the batch size",
            remedy={"train.batch_size": training_plan.fitting_batch(
                len(train_set), strategy.num_replicas_in_sync)})
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
    with rollback_unless_checkpointed(dirs, CHECKPOINT_FILE,
                                      (CONFIG_FILE, HELDOUT_FILE, HISTORY_FILE), created):
        trainer, best, ran = _fit(dirs, model_config=model_config, train_config=train_config,
                                  search_config=search_config, strategy=strategy,
                                  extra_callbacks=extra_callbacks, verbose=verbose,
                                  train_set=train_set, heldout=heldout, plan=plan,
                                  global_batch=global_batch, resuming=resuming)
    kept_epoch = _write_kept_weights(write_dir, model_config, trainer, best,
                                     max(plan.epochs, ran.initial_epoch), plan.epochs)
    return TrainResult(model_dir, dirs.log_dir, ran.epochs_run, ran.history, len(train_set),
                       heldout, time.time() - start, train_set, plan, kept_epoch)


def _fit(dirs: RunDirs, *, model_config, train_config, search_config, strategy,
         extra_callbacks, verbose, train_set, heldout, plan, global_batch, resuming) -> tuple:
    """Builds the trainer under the strategy and fits it: (trainer, BestWeights or None,
    fit_loop.FitResult)."""
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

    monitors = []
    if monitoring:
        from ic_anogan.training.monitor import SearchMonitor  # the search is not needed otherwise
        monitor_config = dataclasses.replace(search_config, steps=train_config.monitor_search_steps,
                                             restarts=1, mode=Mode.SEARCH.value)
        monitors.append(SearchMonitor(trainer.scored_generator, discriminator,
                                      heldout.images[:train_config.monitor_images],
                                      dirs.log_dir, plan.monitor_every_epochs, monitor_config,
                                      best=best))
    extras = [SampleGrid(trainer.scored_generator, dirs.log_dir, seed=train_config.seed)]
    extras += [factory(trainer=trainer, heldout=heldout, log_dir=dirs.log_dir)
               for factory in extra_callbacks]
    ran = fit(
        trainer, dirs=dirs, files=FILES, resume=resuming, epochs=plan.epochs,
        updates_per_epoch=plan.updates_per_epoch,
        # Endless, so that an epoch can be more updates than one pass (small data).
        make_dataset=lambda initial_epoch: distribution.sharded(loading.training_stream(
            train_set.images, global_batch, seed=train_config.seed,
            start_batch=initial_epoch * plan.updates_per_epoch)),
        tensorboard_dir=dirs.log_dir, loss_names=("d_loss", "g_loss"),
        advice="Lower train.learning_rate or check the images.",
        # The monitor before the checkpoint, so that the checkpoint holds this epoch's choice.
        before_checkpoint=monitors, after_checkpoint=extras, verbose=verbose)
    return trainer, best, ran


def _write_kept_weights(write_dir: str, model_config: ModelConfig, trainer: GANTrainer,
                        best: Optional[BestWeights], last_epoch: int, epochs: int) -> int:
    """Writes the kept G (the average when there is one) and D, records which epoch
    they are and why, and returns that epoch."""
    kept_epoch = last_epoch
    kept_generator, kept_discriminator = trainer.scored_generator, trainer.discriminator
    if best is not None and best.kept_epoch:
        kept_epoch = best.kept_epoch
        kept_generator, kept_discriminator, _ = build_models(model_config)
        best.load_into(kept_generator, kept_discriminator)
    write_weights(kept_generator, os.path.join(write_dir, GENERATOR_FILE))
    write_weights(kept_discriminator, os.path.join(write_dir, DISCRIMINATOR_FILE))
    selected = best is not None and best.kept_epoch
    selection = {
        "kept_epoch": kept_epoch,
        "rule": "lowest held-out reconstruction error" if selected else "last epoch",
        "heldout_reconstruction_error": best.kept_error if selected else None,
        "generator": "average" if trainer.ema_generator is not None else "raw"}
    model_dir_lib.record(write_dir, selection=selection)
    log.info("kept the %s generator of epoch %d of %d (%s%s)", selection["generator"],
             kept_epoch, epochs, selection["rule"],
             f": {best.kept_error:.4f}" if selection["heldout_reconstruction_error"] else "")
    return kept_epoch
