"""TensorFlow's CPU runtime: oneDNN on wherever this package runs on x86.

TensorFlow turns its oneDNN kernels on by default only on x86 CPUs with the
newer vector extensions (AVX-512 VNNI, BF16, AMX). On the many AVX2 cloud and
workstation CPUs it leaves them off, and the latent search runs 2.4x slower
there (docs/benchmarks.md, "oneDNN"). TensorFlow reads the switch,
TF_ENABLE_ONEDNN_OPTS, once, when it is first imported, so it has to be set
before that: importing `ic_anogan` does it (ic_anogan/__init__.py), and every
binary, console command and benchmark imports the package before TensorFlow.

A user's own TF_ENABLE_ONEDNN_OPTS always wins, `0` included. A program that
imports TensorFlow before `ic_anogan` gets TensorFlow's default; `describe`
then says so, and the user sets TF_ENABLE_ONEDNN_OPTS=1 in the environment.

This module imports no TensorFlow at module level.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from typing import Optional

log = logging.getLogger(__name__)

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
# Machines whose TensorFlow wheels carry oneDNN kernels worth turning on.
_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
# The vector extensions worth naming in the log, in the order they arrived.
_VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512vnni",
                 "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16")

# What enable_onednn did, for describe(): set, user, late, not_x86.
_decision: Optional[str] = None
_logged = False


def is_x86(machine: Optional[str] = None) -> bool:
    return (machine or platform.machine()).lower() in _X86


def enable_onednn(environ=os.environ, modules=sys.modules,
                  machine: Optional[str] = None) -> str:
    """Sets TF_ENABLE_ONEDNN_OPTS=1 when it can still take effect; returns what it did.

    Returns:
      "user": the variable was already set (the user's choice is kept);
      "late": TensorFlow was imported first, so setting it would change nothing;
      "not_x86": not an x86 machine, TensorFlow's default is kept;
      "set": the variable is now 1.
    """
    global _decision
    if ONEDNN_VARIABLE in environ:
        decision = "user"
    elif not is_x86(machine):
        decision = "not_x86"
    elif "tensorflow" in modules:
        decision = "late"
    else:
        environ[ONEDNN_VARIABLE] = "1"
        decision = "set"
    if environ is os.environ:
        _decision = decision
    return decision


def cpu_description(cpuinfo_path: str = "/proc/cpuinfo") -> tuple[str, list]:
    """(CPU model name, its vector extensions among _VECTOR_FLAGS) as far as the OS tells."""
    name, flags = platform.processor() or platform.machine(), []
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and name in ("", platform.machine(), platform.processor()):
                    name = value.strip()
                elif key == "flags" and not flags:
                    present = set(value.split())
                    flags = [flag for flag in _VECTOR_FLAGS if flag in present]
                if name and flags:
                    break
    except OSError:  # not Linux: the model name is all the platform module knows
        pass
    return name or "unknown CPU", flags


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN kernels in this process (imports TensorFlow)."""
    import tensorflow  # noqa: F401  (the switch is read at import)
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # a TensorFlow without the probe: trust the variable
        return os.environ.get(ONEDNN_VARIABLE, "0").lower() in ("1", "true")


def describe() -> str:
    """One line: whether oneDNN is on and why, and the CPU with its vector extensions."""
    name, flags = cpu_description()
    enabled = onednn_enabled()
    why = {
        "set": f"{ONEDNN_VARIABLE}=1 set by ic_anogan",
        "user": f"{ONEDNN_VARIABLE}={os.environ.get(ONEDNN_VARIABLE)} set by the user",
        "not_x86": "TensorFlow's default on this machine",
        "late": ("TensorFlow was imported before ic_anogan, so its default holds"
                 + ("" if enabled else f"; set {ONEDNN_VARIABLE}=1 in the environment for "
                    "up to 2.4x faster scoring on this CPU")),
        None: "TensorFlow's default",
    }[_decision]
    extensions = " ".join(flags) if flags else "not reported"
    return (f"oneDNN {'on' if enabled else 'off'} ({why}); CPU: {name}; "
            f"vector extensions: {extensions}")


def log_once() -> None:
    """Logs `describe()` at INFO the first time it is called in a process."""
    global _logged
    if _logged:
        return
    _logged = True
    message = describe()
    if _decision == "late" and "oneDNN off" in message:
        log.warning("%s", message)
    else:
        log.info("%s", message)
