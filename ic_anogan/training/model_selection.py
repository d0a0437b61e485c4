"""Which epoch's weights a run keeps: the best on held-out good images.

For the GAN, the G and D that reconstruct held-out good parts best; for the
encoder, the E with the lowest held-out loss.

A GAN's last epoch is not its best: G drifts, and with few images it starts
to memorise. Defects are not available to choose by, but good images held
out of training are, and what floors detection is how closely G(z*) fits a
good part after the search. So at every monitor evaluation the held-out
images' mean |x − G(z)| after a short search is offered to `BestWeights`;
the lowest keeps a copy of G (the scored one, i.e. the average when there
is one) and D. Only the pixel residual is compared: the search's loss also
holds D's feature term, whose scale changes as D trains, so it would not
compare epochs fairly.

The encoder's choice is the same object offered E's held-out loss after each
epoch. The copies, the kept epoch and its error are checkpoint variables, so
a resumed run goes on with the choice it had made.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf


class BestWeights:
    """The lowest-error copy of some models' weights (G and D; or E)."""

    def __init__(self, *models: keras.Model):
        self.sources = [weight for model in models for weight in model.weights]
        self.copies = [tf.Variable(np.asarray(v), trainable=False, name="best_weight")
                       for v in self.sources]
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
        self.error = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_error")

    @property
    def variables(self) -> list:
        return self.copies + [self.epoch, self.error]

    @property
    def kept_epoch(self) -> int:
        """The epoch (1-based) whose weights are kept; 0 when none was offered yet."""
        return int(self.epoch.numpy())

    @property
    def kept_error(self) -> float:
        return float(self.error.numpy())

    def offer(self, epoch: int, error: float) -> bool:
        """Keeps the current weights if `error` is the lowest so far; says whether it did."""
        if not math.isfinite(error) or error >= self.kept_error:
            return False
        for copy, source in zip(self.copies, self.sources):
            copy.assign(source)
        self.epoch.assign(epoch)
        self.error.assign(error)
        return True

    def load_into(self, *models: keras.Model) -> None:
        """Assigns the kept weights to models of the same configuration, in the order given
        when the copy was made (the same models, or fresh ones)."""
        targets = [weight for model in models for weight in model.weights]
        if len(targets) != len(self.copies):
            raise ValueError(f"the models have {len(targets)} weights, "
                             f"the kept copy {len(self.copies)}")
        for target, copy in zip(targets, self.copies):
            target.assign(copy)
