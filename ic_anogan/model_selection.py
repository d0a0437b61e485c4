"""Which epoch's G and D a run keeps: the one that reconstructs held-out good parts best.

A GAN's last epoch is not its best: G drifts, and with few images it starts
to memorise. Defects are not available to choose by, but good images held
out of training are, and what floors detection is how closely G(z*) fits a
good part after the search. So at every monitor evaluation the held-out
images' mean |x − G(z)| after a short search is offered to `BestWeights`;
the lowest keeps a copy of G (the scored one, i.e. the average when there
is one) and D. Only the pixel residual is compared: the search's loss also
holds D's feature term, whose scale changes as D trains, so it would not
compare epochs fairly.

The copies, the kept epoch and its error are checkpoint variables, so a
resumed run goes on with the choice it had made.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ic_anogan.models import Discriminator, Generator


class BestWeights:
    """The lowest-error copy of a generator's and a discriminator's weights."""

    def __init__(self, generator: Generator, discriminator: Discriminator):
        self.sources = list(generator.weights) + list(discriminator.weights)
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

    def load_into(self, generator: Generator, discriminator: Discriminator) -> None:
        """Assigns the kept weights to another G and D of the same configuration."""
        targets = list(generator.weights) + list(discriminator.weights)
        if len(targets) != len(self.copies):
            raise ValueError(f"the models have {len(targets)} weights, "
                             f"the kept copy {len(self.copies)}")
        for target, copy in zip(targets, self.copies):
            target.assign(copy)
