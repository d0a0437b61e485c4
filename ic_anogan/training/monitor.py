"""Training-time monitoring: a short latent search on held-out good images.

Every few epochs the monitor searches a fixed set of held-out good images
for a few steps and logs their mean anomaly score, their mean reconstruction
error |x − G(z)| and a query / reconstruction / |difference| grid, so a user
watching TensorBoard sees the generator learn to reconstruct good parts. It
uses the same search and loss code as scoring, so the number it logs is the
score, not a look-alike. The reconstruction error drives model selection
(model_selection.py) when a `BestWeights` is given.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from ic_anogan.config import SearchConfig
from ic_anogan.models.networks import Discriminator, FeatureExtractor, Generator
from ic_anogan.scoring.search import LatentSearch
from ic_anogan.scoring.summaries import comparison_grid
from ic_anogan.training.model_selection import BestWeights

log = logging.getLogger(__name__)

# Images shown in the TensorBoard grid (all monitor images are scored).
GRID_IMAGES = 8


class SearchMonitor(keras.callbacks.Callback):
    """Logs `monitor/heldout_anomaly_score`, `monitor/heldout_reconstruction_error`
    and `monitor/reconstructions`; offers the error to `best` if given."""

    def __init__(self, generator: Generator, discriminator: Discriminator,
                 images: np.ndarray, log_dir: str, every_epochs: int,
                 search_config: SearchConfig, best: Optional[BestWeights] = None):
        super().__init__()
        self.images = tf.constant(images, tf.float32)
        self.every_epochs = every_epochs
        self.search = LatentSearch(generator, FeatureExtractor(discriminator), search_config)
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "monitor"))
        self.best = best
        self.last_mean_score = None
        self.last_error = None

    def on_epoch_end(self, epoch, logs=None):
        last = self.params and epoch + 1 == self.params.get("epochs")
        if (epoch + 1) % self.every_epochs and not last:
            return
        outputs = self.search.score(self.images)
        self.last_mean_score = float(tf.reduce_mean(outputs["anomaly_score"]))
        self.last_error = float(tf.reduce_mean(outputs["anomaly_map"]))
        kept = self.best is not None and self.best.offer(epoch + 1, self.last_error)
        log.info("epoch %d: held-out reconstruction error %.4f, anomaly score %.2f%s",
                 epoch + 1, self.last_error, self.last_mean_score,
                 " (best so far: kept)" if kept else "")
        with self.writer.as_default():
            tf.summary.scalar("monitor/heldout_anomaly_score", self.last_mean_score,
                              step=epoch + 1)
            tf.summary.scalar("monitor/heldout_reconstruction_error", self.last_error,
                              step=epoch + 1)
            tf.summary.image("monitor/reconstructions",
                             comparison_grid(self.images.numpy()[:GRID_IMAGES],
                                             outputs["reconstruction"].numpy()[:GRID_IMAGES],
                                             outputs["anomaly_map"].numpy()[:GRID_IMAGES]),
                             step=epoch + 1)
        self.writer.flush()
