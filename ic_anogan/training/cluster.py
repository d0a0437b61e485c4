"""TF_CONFIG, read and checked before TensorFlow loads.

Multi-worker training takes its cluster from the TF_CONFIG environment
variable, and TensorFlow's own errors about it name neither the variable nor
the value it read. This module checks it first, by the strategy asked for:

  * `multi_worker` needs a valid TF_CONFIG; unset, it would train as one
    worker without a word, so it is refused.
  * `auto` decides from TF_CONFIG, so a set but damaged one is refused too:
    the user may have meant a cluster.
  * `default` and `mirrored` train on this machine and ignore TF_CONFIG; a
    set one is named in a warning, never parsed.

No TensorFlow here, so a binary refuses a bad TF_CONFIG at once.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Optional

from ic_anogan.config.checks import SettingError

VARIABLE = "TF_CONFIG"
TASK_TYPES = ("chief", "worker", "ps", "evaluator")


class ClusterConfigError(SettingError):
    """TF_CONFIG is unusable for the strategy asked for; the message names it and its value."""


def _refuse(value: str, problem: str) -> ClusterConfigError:
    shown = value if len(value) <= 300 else value[:300] + "..."
    return ClusterConfigError(VARIABLE, problem, repr(shown))


def parse(value: str) -> dict:
    """The checked TF_CONFIG: {"cluster": {type: [host:port, ...]}, "task": {type, index}}.

    Raises:
      ClusterConfigError: not JSON, or a cluster or task that TensorFlow
        would refuse later, with the field and what was expected.
    """
    try:
        config = json.loads(value)
    except json.JSONDecodeError as e:
        raise _refuse(value, f"not valid JSON ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise _refuse(value, 'expected a JSON object with "cluster": {"worker": '
                      '["host:port", ...]} and "task": {"type": "worker", "index": i}')
    cluster = config["cluster"]
    for task_type, addresses in cluster.items():
        if task_type not in TASK_TYPES:
            raise _refuse(value, f"cluster names the task type {task_type!r}; expected "
                          f"{', '.join(TASK_TYPES)}")
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and ":" in a for a in addresses)):
            raise _refuse(value, f"cluster.{task_type} must be a non-empty list of "
                          "'host:port' strings")
    if "worker" not in cluster and "chief" not in cluster:
        raise _refuse(value, "cluster has no 'worker' (or 'chief') list")
    task = config.get("task")
    if not isinstance(task, dict):
        raise _refuse(value, 'expected "task": {"type": "worker", "index": i}')
    task_type, index = task.get("type"), task.get("index")
    if task_type not in cluster:
        raise _refuse(value, f"task.type is {task_type!r}; expected one of the cluster's "
                      f"task types: {', '.join(cluster)}")
    if isinstance(index, bool) or not isinstance(index, int) or not (
            0 <= index < len(cluster[task_type])):
        raise _refuse(value, f"task.index is {index!r}; the cluster has "
                      f"{len(cluster[task_type])} {task_type} task(s), so expected 0 to "
                      f"{len(cluster[task_type]) - 1}")
    return config


def check(strategy: str, environ: Mapping[str, str] = os.environ) -> Optional[dict]:
    """The checked TF_CONFIG when `strategy` reads it, else None (see the module docstring).

    Raises:
      ClusterConfigError: multi_worker without TF_CONFIG, or a damaged TF_CONFIG
        with multi_worker or auto.
    """
    value = environ.get(VARIABLE, "")
    if strategy in ("default", "mirrored"):
        return None
    if not value.strip():
        if strategy == "multi_worker":
            raise ClusterConfigError(
                "distribution.strategy", f"{VARIABLE} is not set, so this process would "
                f"train alone; set {VARIABLE} on every worker (README, 'Training across "
                "machines'), or use the default strategy for one machine", strategy)
        return None
    return parse(value)


def worker_count(config: Optional[dict]) -> int:
    """Workers and chief of a checked TF_CONFIG; 0 without one."""
    if not config:
        return 0
    cluster = config["cluster"]
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def describe_task(config: Optional[dict]) -> str:
    """'worker 1 of 2' for the log and for error messages."""
    if not config:
        return "one process"
    task = config["task"]
    return f"{task['type']} {task['index']} of {worker_count(config)}"
