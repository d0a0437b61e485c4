"""Training on several devices or machines with tf.distribute: which strategy, who writes.

TensorFlow's multi-worker conventions, as this project follows them:
  * Every worker runs the same program with its own TF_CONFIG (cluster and
    task); MultiWorkerMirroredStrategy keeps the replicas in step with
    collective all-reduces.
  * Only the chief (worker 0, or the task named "chief") writes the model
    directory, the checkpoints, TensorBoard and the calibration. The other
    workers take part in every collective (saving included) but write to a
    temporary directory of their own, removed when they finish.
  * Each worker reads its shard of every global batch; the global batch is
    the per-worker batch times the number of replicas.
  * A restarted job resumes from the chief's checkpoint, so the model
    directory must be readable by every worker (a shared file system), as
    tf.distribute's own checkpointing requires.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from typing import Iterator, Optional

import keras
import tensorflow as tf

from ic_anogan.core.errors import IcAnoganError
from ic_anogan.training import cluster

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


# A collective that waits longer than this for its peers ends the job: a lost
# worker must not leave the others holding their machines in silence.
DEFAULT_COLLECTIVE_TIMEOUT_SECONDS = 600.0


class WorkerLostError(IcAnoganError, RuntimeError):
    """A multi-worker job lost a peer (killed, hung or unreachable); the message names it."""


def make_strategy(name: str,
                  collective_timeout_seconds: Optional[float] = DEFAULT_COLLECTIVE_TIMEOUT_SECONDS
                  ) -> tf.distribute.Strategy:
    """A tf.distribute strategy by name: auto, default, mirrored or multi_worker.

    auto: MultiWorkerMirrored when TF_CONFIG names several tasks, Mirrored
    when TF sees more than one GPU, else TF's default (one device). TF_CONFIG
    is checked by cluster.check first (default and mirrored ignore it).
    collective_timeout_seconds: a multi-worker collective that waits longer
    fails (see `lost_worker_error`); None waits forever.

    Raises:
      cluster.ClusterConfigError: TF_CONFIG is unset with multi_worker, or damaged.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy={name}: expected one of {', '.join(STRATEGIES)}")
    tf_config = cluster.check(name)
    if name in ("default", "mirrored") and os.environ.get(cluster.VARIABLE, "").strip():
        log.warning("strategy %s trains on this machine: TF_CONFIG is set and ignored", name)
    if name == "auto":
        if cluster.worker_count(tf_config) > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        log.info("multi-worker training as %s; collectives time out after %s",
                 cluster.describe_task(tf_config),
                 f"{collective_timeout_seconds:g} s" if collective_timeout_seconds else "never")
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=collective_timeout_seconds)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    return tf.distribute.get_strategy()


_TASK_NAME = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")


def lost_worker_error(error: Exception, strategy: tf.distribute.Strategy) -> Optional[
        WorkerLostError]:
    """The error a multi-worker job reports when a collective failed because a peer went
    away or stalled, naming the peer where TensorFlow's message does; None for any other
    error (which keeps its traceback)."""
    if not is_multi_worker(strategy) or not isinstance(error, (
            tf.errors.DeadlineExceededError, tf.errors.UnavailableError,
            tf.errors.CancelledError, tf.errors.AbortedError, tf.errors.InternalError)):
        return None
    resolver = strategy.cluster_resolver
    own = (resolver.task_type, int(resolver.task_id))
    peers = sorted({(kind, int(index)) for kind, index in _TASK_NAME.findall(str(error))
                    if (kind, int(index)) != own})
    cluster_spec = resolver.cluster_spec().as_dict()
    if not peers:  # TensorFlow did not say which: every other task is a suspect
        peers = [(kind, index) for kind, addresses in sorted(cluster_spec.items())
                 for index in range(len(addresses)) if (kind, index) != own]
    named = " or ".join(f"{kind} {index} ({cluster_spec[kind][index]})"
                        for kind, index in peers if index < len(cluster_spec.get(kind, [])))
    first_line = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    return WorkerLostError(
        f"{own[0]} {own[1]}: lost {named}: a collective failed or waited past its timeout "
        f"({type(error).__name__}: {first_line}). Start every worker again with the same "
        "command: training resumes after the last finished epoch")


def local_cluster(count: int) -> list:
    """TF_CONFIG values (JSON) for `count` workers on this machine, on free ports of
    127.0.0.1: worker i runs with the i-th. For trying the multi-worker path on one host."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    workers = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
            for i in range(count)]


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans several worker processes (not one process's devices)."""
    # The test Keras itself uses to pick its multi-worker code paths.
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes: always, unless it is a non-chief worker of a cluster."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in (
        resolver.cluster_spec().as_dict())


@contextlib.contextmanager
def writable_dirs(strategy: tf.distribute.Strategy, *dirs: str) -> Iterator[tuple]:
    """The directories this process writes: `dirs` on the chief, else temporary ones
    (removed on exit, whatever happens)."""
    if is_chief(strategy):
        yield dirs
        return
    root = tempfile.mkdtemp(prefix="ic_anogan_worker_")
    try:
        yield tuple(os.path.join(root, str(i)) for i in range(len(dirs)))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def reducible_logs(logs: dict) -> dict:
    """`train_step`'s logs in a shape the strategy can reduce.

    Keras 3's fit reduces a multi-worker run's logs with
    strategy.reduce(MEAN, value, axis=0), which fails on a scalar
    (tensorflow/tensorflow#72388); with one axis of length 1 it averages
    across the replicas and returns the scalar Keras expects.
    """
    if is_multi_worker(tf.distribute.get_strategy()):
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


def sharded(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` (global batches) split by element across the workers: worker i reads
    the i-th part of every global batch, so N workers see the global batches one
    process would. An in-memory dataset has no files to shard by, which is what
    TensorFlow's automatic choice would try first."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)


def synchronize_batch_norm(strategy: tf.distribute.Strategy, *models) -> None:
    """With several replicas, batch norm in training takes its statistics over the
    global batch (Keras' synchronized batch norm), as one device would, instead of
    over each replica's share. With one replica the layers stay as they are."""
    if strategy.num_replicas_in_sync < 2:
        return
    for model in models:
        # Every nested layer: G and D hold theirs in lists. The flag is read at call
        # time, so the built layers and their variables stay as they are.
        for layer in model._flatten_layers():  # pylint: disable=protected-access
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns once every worker has reached it (a collective all-reduce): the
    workers then read what the chief wrote before it."""
    if is_multi_worker(strategy):
        strategy.reduce(tf.distribute.ReduceOp.SUM,
                        strategy.run(lambda: tf.constant(1.0)), axis=None)
