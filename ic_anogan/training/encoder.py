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
import tensorflow as tf

from ic_anogan import config as config_lib
from ic_anogan.config import EncoderConfig
from ic_anogan.data import loading
from ic_anogan.data.image_set import DataError, ImageSet
from ic_anogan.models import model_dir as model_dir_lib
from ic_anogan.models.networks import build_encoder
from ic_anogan.training import distribution
from ic_anogan.training.training_plan import fitting_batch
from ic_anogan.training.encoder_trainer import (EncoderReconstructionGrid,
                                                EncoderTrainer, KeepBestEpoch)
from ic_anogan.training.fit_loop import FitFiles, RunDirs, fit, rollback_unless_checkpointed

log = logging.getLogger(__name__)

FILES = FitFiles(model_dir_lib.ENCODER_CHECKPOINT_FILE, model_dir_lib.ENCODER_HISTORY_FILE)
GRID_IMAGES = 8


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
    checkpoint = os.path.join(model_dir, FILES.checkpoint)
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
                f"use the original encoder flags, or delete {FILES.checkpoint} to start over")
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
        return _train_encoder(dirs=RunDirs(model_dir, write_dir, write_log_dir),
                              encoder_config=encoder_config, train_set=train_set,
                              heldout=heldout, strategy=strategy,
                              extra_callbacks=extra_callbacks, verbose=verbose)


def _train_encoder(*, dirs: RunDirs, encoder_config, train_set, heldout, strategy,
                   extra_callbacks, verbose) -> EncoderResult:
    """`train_encoder` reading the GAN and the run it resumes from dirs.model_dir and
    writing to dirs.write_dir (the same, but on a worker: distribution.py)."""
    start = time.time()
    global_batch = encoder_config.batch_size * strategy.num_replicas_in_sync
    if len(train_set) < global_batch:
        raise DataError(f"{len(train_set)} training images, fewer than one encoder "
                        f"batch of {global_batch}; lower the encoder's batch size",
                        remedy={"encoder.batch_size": fitting_batch(
                            len(train_set), strategy.num_replicas_in_sync)})
    keras.utils.set_random_seed(encoder_config.seed)
    with strategy.scope():
        gan = model_dir_lib.load_trained_model(dirs.model_dir, load_encoder=False)
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
    record_path = os.path.join(dirs.write_dir, model_dir_lib.ENCODER_CONFIG_FILE)
    resume = _resumable(dirs.model_dir, description)
    if not resume:
        # An older encoder (other settings' epochs, or another GAN) must not
        # survive beside the new record.
        for stale in (FILES.checkpoint, FILES.history, model_dir_lib.ENCODER_FILE):
            if os.path.exists(os.path.join(dirs.write_dir, stale)):
                os.remove(os.path.join(dirs.write_dir, stale))
    # Written before the first epoch so a killed run can check what it resumes.
    config_lib.write_json(record_path, description)

    # An epoch is one pass, but at least MIN_UPDATES_PER_EPOCH updates, as for
    # the GAN: 20 passes over a few hundred images are only about 100 updates.
    updates_per_epoch = max(len(train_set) // global_batch, config_lib.MIN_UPDATES_PER_EPOCH)
    # Every held-out image counts in validation, the last partial batch too.
    validation = (distribution.sharded(loading.make_dataset(heldout.images, global_batch))
                  if len(heldout) else None)
    keep_best = encoder_config.keep_best and len(heldout) > 0
    grids = ([EncoderReconstructionGrid(encoder, gan.generator, heldout.images[:GRID_IMAGES],
                                        dirs.log_dir)] if len(heldout) else [])
    with rollback_unless_checkpointed(dirs, FILES.checkpoint,
                                      [model_dir_lib.ENCODER_CONFIG_FILE, FILES.history],
                                      created_dir=False):
        ran = fit(
            trainer, dirs=dirs, files=FILES, resume=resume, epochs=encoder_config.epochs,
            updates_per_epoch=updates_per_epoch,
            make_dataset=lambda initial_epoch: distribution.sharded(loading.training_stream(
                train_set.images, global_batch, seed=encoder_config.seed,
                start_batch=initial_epoch * updates_per_epoch)),
            tensorboard_dir=os.path.join(dirs.log_dir, "encoder"), loss_names=("loss",),
            advice="Lower encoder.learning_rate.",
            before_checkpoint=[KeepBestEpoch(trainer.best)] if keep_best else [],
            after_checkpoint=grids + [factory(trainer=trainer, log_dir=dirs.log_dir)
                                      for factory in extra_callbacks],
            validation=validation, verbose=verbose, label="the encoder")
    kept_epoch = (trainer.restore_best() if keep_best else None) or encoder_config.epochs
    model_dir_lib.write_weights(encoder, os.path.join(dirs.write_dir, model_dir_lib.ENCODER_FILE))
    history = ran.history
    description["last_epoch"] = {k: v[-1] for k, v in history.items() if v}
    description["kept_epoch"] = kept_epoch
    description["kept_epoch_metrics"] = {k: v[kept_epoch - 1] for k, v in history.items()
                                         if len(v) >= kept_epoch}
    config_lib.write_json(record_path, description)
    return EncoderResult(os.path.join(dirs.model_dir, model_dir_lib.ENCODER_FILE),
                         ran.epochs_run, history, time.time() - start, kept_epoch)
