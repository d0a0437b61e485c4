"""Training-time monitoring: a short latent search on held-out good images.

Every few epochs the monitor searches a fixed handful of held-out good images
for a few steps and logs their mean anomaly score and a query /
reconstruction / |difference| grid, so a user watching TensorBoard sees the
generator learn to reconstruct good parts. It uses the same search and loss
code as scoring, so the number it logs is the score, not a look-alike.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from ic_anogan.config import SearchConfig
from ic_anogan.models import Discriminator, FeatureExtractor, Generator
from ic_anogan.search import LatentSearch
from ic_anogan.summaries import comparison_grid


class SearchMonitor(keras.callbacks.Callback):
    """Logs `monitor/heldout_anomaly_score` and `monitor/reconstructions`."""

    def __init__(self, generator: Generator, discriminator: Discriminator,
                 images: np.ndarray, log_dir: str, every_epochs: int,
                 search_config: SearchConfig):
        super().__init__()
        self.images = tf.constant(images, tf.float32)
        self.every_epochs = every_epochs
        self.search = LatentSearch(generator, FeatureExtractor(discriminator), search_config)
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "monitor"))
        self.last_mean_score = None

    def on_epoch_end(self, epoch, logs=None):
        last = self.params and epoch + 1 == self.params.get("epochs")
        if (epoch + 1) % self.every_epochs and not last:
            return
        outputs = self.search.score(self.images)
        self.last_mean_score = float(tf.reduce_mean(outputs["anomaly_score"]))
        with self.writer.as_default():
            tf.summary.scalar("monitor/heldout_anomaly_score", self.last_mean_score,
                              step=epoch + 1)
            tf.summary.image("monitor/reconstructions",
                             comparison_grid(self.images.numpy(),
                                             outputs["reconstruction"].numpy(),
                                             outputs["anomaly_map"].numpy()), step=epoch + 1)
        self.writer.flush()
