"""Training checkpoints: every variable a resumed run needs, in one file, written atomically.

A checkpoint is one `.npz` holding a trainer's `checkpoint_variables()` (for
the GAN: G, D, both optimizers, the noise generator, G's average and the kept
epoch's copy) in order, with their names, plus the number of finished epochs.
Variables are matched by position and checked by shape: a checkpoint from
another configuration is refused, naming the variable.
"""

from __future__ import annotations

import keras
import numpy as np

from ic_anogan.core import atomic_io
from ic_anogan.models.model_dir import ModelDirError


def _variable_name(variable) -> str:
    return getattr(variable, "path", None) or variable.name


def _numpy_dtype(variable) -> np.dtype:
    # tf.Variable's dtype is a tf.DType, Keras 3's a string.
    return np.dtype(getattr(variable.dtype, "as_numpy_dtype", variable.dtype))


def build_optimizers(trainer: keras.Model) -> None:
    """Creates the optimizer slots now, so they exist before a restore."""
    trainer.d_optimizer.build(trainer.discriminator.trainable_weights)
    trainer.g_optimizer.build(trainer.generator.trainable_weights)


def save_checkpoint(trainer: keras.Model, path: str, epoch: int) -> None:
    """Writes the trainer's `checkpoint_variables()` and the finished-epoch count, atomically."""
    variables = trainer.checkpoint_variables()
    arrays = {f"v{i:04d}": np.asarray(v.numpy())
              for i, v in enumerate(variables)}
    names = np.array([_variable_name(v) for v in variables])
    with atomic_io.replace_file(path, suffix=".npz") as temp:
        with open(temp, "wb") as f:
            np.savez(f, epoch=np.int64(epoch), names=names, **arrays)


def restore_checkpoint(trainer: keras.Model, path: str) -> int:
    """Restores `save_checkpoint`'s file; returns the number of finished epochs.

    Raises:
      ModelDirError: the checkpoint does not match the models' variables.
    """
    variables = trainer.checkpoint_variables()
    with np.load(path) as stored:
        names = list(stored["names"])
        if len(names) != len(variables):
            raise ModelDirError(f"{path}: holds {len(names)} variables, the models have "
                                f"{len(variables)}; it was written for another configuration")
        for i, variable in enumerate(variables):
            value = stored[f"v{i:04d}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise ModelDirError(f"{path}: variable {names[i]} has shape {value.shape}, "
                                    f"the model expects {tuple(variable.shape)}")
            # Cast: checkpoints written before the encoder kept its best epoch in
            # BestWeights hold its loss as float32, BestWeights as float64.
            variable.assign(value.astype(_numpy_dtype(variable)))
        return int(stored["epoch"])


# --------------------------------------------------------------------------
