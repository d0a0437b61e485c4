"""Training callbacks shared by the GAN and the encoder.

Checkpoints with history, a stop at the first non-finite loss, and TensorBoard
samples."""

from __future__ import annotations

import math
import os
from typing import Sequence

import keras
import tensorflow as tf

from ic_anogan import config as config_lib
from ic_anogan.core.errors import IcAnoganError
from ic_anogan.models.networks import Generator
from ic_anogan.scoring.summaries import image_grid
from ic_anogan.training.checkpoints import save_checkpoint


class NonFiniteLossError(IcAnoganError, RuntimeError):
    """A loss became NaN or infinite; training stopped."""


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the checkpoint, then appends the epoch's logs to history.json.

    The history is cut to the checkpoint's epoch count before appending, so
    a run killed between the two writes and resumed never repeats an epoch.
    """

    def __init__(self, trainer: keras.Model, path: str, history_path: str):
        super().__init__()
        self.trainer, self.path, self.history_path = trainer, path, history_path

    def on_epoch_end(self, epoch, logs=None):
        save_checkpoint(self.trainer, self.path, epoch + 1)
        history = (config_lib.read_json(self.history_path)
                   if os.path.exists(self.history_path) else {})
        for key, value in (logs or {}).items():
            history[key] = history.get(key, [])[:epoch] + [float(value)]
        config_lib.write_json(self.history_path, history)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `NonFiniteLossError` at the first NaN or infinite loss.

    Raising mid-epoch means the epoch's checkpoint is never written, so the
    last good checkpoint stays as it was.
    """

    def __init__(self, checkpoint_path: str, names: Sequence[str] = ("d_loss", "g_loss"),
                 advice: str = "Lower the learning rate or check the images."):
        super().__init__()
        self.checkpoint_path = checkpoint_path
        self.names, self.advice = tuple(names), advice
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        for name in self.names:
            value = (logs or {}).get(name)
            if value is not None and not math.isfinite(float(value)):
                kept = (f"the last good checkpoint ({self.checkpoint_path}) is intact"
                        if os.path.exists(self.checkpoint_path) else "no checkpoint was written")
                raise NonFiniteLossError(
                    f"{name} became {float(value)} at epoch {self.epoch + 1}, batch {batch + 1}; "
                    f"training stopped and {kept}. {self.advice}")


class SampleGrid(keras.callbacks.Callback):
    """Logs a grid of G(z) for a fixed z to TensorBoard after every epoch."""

    def __init__(self, generator: Generator, log_dir: str, count: int = 16, seed: int = 0):
        super().__init__()
        self.generator = generator
        self.z = tf.random.stateless_normal((count, generator.latent_dim), seed=[seed, 7])
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "images"))

    def on_epoch_end(self, epoch, logs=None):
        images = self.generator(self.z, training=False)
        with self.writer.as_default():
            tf.summary.image("generated_samples", image_grid(images), step=epoch + 1)
        self.writer.flush()
