"""The one fit loop of the GAN and the encoder: resume, checkpoints, history, rollback.

Both trainers are `keras.Model`s with a custom `train_step` and a
`checkpoint_variables()` method. `fit` restores a trainer from its
checkpoint, runs `Model.fit` from the next epoch with the callbacks every
run has (a stop at the first non-finite loss, the per-epoch checkpoint and
history, TensorBoard) around the trainer's own, and returns what ran.
`rollback_unless_checkpointed` removes what a run wrote when it ends before
its first checkpoint, so a refused or failed run leaves no half model behind.
The file names are model_dir.py's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from typing import Callable, Iterator, Optional, Sequence

import keras
import tensorflow as tf

from ic_anogan import config as config_lib
from ic_anogan.training.callbacks import EpochCheckpoint, StopOnNonFiniteLoss
from ic_anogan.training.checkpoints import restore_checkpoint

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunDirs:
    """Where a run reads what it resumes (`model_dir`) and where it writes (`write_dir`,
    `log_dir`): the same folders, except on a multi-worker run's non-chief workers
    (distribution.writable_dirs)."""

    model_dir: str
    write_dir: str
    log_dir: str


@dataclasses.dataclass(frozen=True)
class FitFiles:
    """A trainer's checkpoint and history file names inside the model directory."""

    checkpoint: str
    history: str


@dataclasses.dataclass
class FitResult:
    """What `fit` ran: the epoch it started after, and the run's whole history."""

    initial_epoch: int
    epochs_run: int
    history: dict


def fit(trainer: keras.Model, *, dirs: RunDirs, files: FitFiles, resume: bool,
        epochs: int, updates_per_epoch: int,
        make_dataset: Callable[[int], tf.data.Dataset],
        tensorboard_dir: str, loss_names: Sequence[str], advice: str,
        before_checkpoint: Sequence[keras.callbacks.Callback] = (),
        after_checkpoint: Sequence[keras.callbacks.Callback] = (),
        validation: Optional[tf.data.Dataset] = None, verbose: int = 1,
        label: str = "") -> FitResult:
    """Runs `trainer.fit` to `epochs`, resuming from the checkpoint when `resume`.

    Args:
      make_dataset: the endless training stream, from the first batch of an epoch
        (called with the epoch the run starts after, so a resumed run sees the
        batches an unbroken one would).
      loss_names, advice: the logs watched for NaN or infinity, and what the
        error then advises.
      before_checkpoint: callbacks whose choices the epoch's checkpoint must hold
        (the monitor, keeping the best epoch).
      after_checkpoint: the rest (image grids, a caller's own).
      label: what the resume log line names ("the encoder"); "" names the model dir.

    Raises:
      ModelDirError: the checkpoint belongs to another configuration.
      NonFiniteLossError: a watched loss became NaN or infinite.
    """
    read_checkpoint = os.path.join(dirs.model_dir, files.checkpoint)
    checkpoint = os.path.join(dirs.write_dir, files.checkpoint)
    history_path = os.path.join(dirs.write_dir, files.history)
    initial_epoch = restore_checkpoint(trainer, read_checkpoint) if resume else 0
    if resume:
        log.info("resuming %s after epoch %d", label or dirs.model_dir, initial_epoch)
    callbacks = [StopOnNonFiniteLoss(checkpoint, names=loss_names, advice=advice),
                 *before_checkpoint,
                 EpochCheckpoint(trainer, checkpoint, history_path),
                 keras.callbacks.TensorBoard(log_dir=tensorboard_dir, update_freq="epoch",
                                             write_graph=False),
                 *after_checkpoint]
    if initial_epoch < epochs:
        trainer.fit(make_dataset(initial_epoch), epochs=epochs,
                    steps_per_epoch=updates_per_epoch, initial_epoch=initial_epoch,
                    validation_data=validation, callbacks=callbacks, verbose=verbose,
                    shuffle=False)
    history = config_lib.read_json(history_path) if os.path.exists(history_path) else {}
    return FitResult(initial_epoch, max(epochs - initial_epoch, 0), history)


@contextlib.contextmanager
def rollback_unless_checkpointed(dirs: RunDirs, checkpoint: str, written: Sequence[str],
                                 created_dir: bool) -> Iterator[None]:
    """Removes `written` (file names in dirs.write_dir), and the folder when this run
    created it, if the block fails before `checkpoint` was first written: a folder
    with settings but no weights would look like a model."""
    try:
        yield
    except BaseException:
        if not os.path.exists(os.path.join(dirs.write_dir, checkpoint)):
            for name in written:
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(dirs.write_dir, name))
            if created_dir:
                with contextlib.suppress(OSError):
                    os.rmdir(dirs.write_dir)
        raise
