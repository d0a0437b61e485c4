"""oneDNN on wherever the package runs on x86, unless the user said otherwise."""

import os
import subprocess
import sys

import pytest

from conftest import REPO
from ic_anogan.core import runtime

PROBE = ("import os, sys\n"
         "{first}\n"
         "from ic_anogan.core import runtime\n"
         "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), runtime.onednn_enabled())\n"
         "print(runtime.describe())\n")


def _probe(first: str, **env_changes) -> list:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO, **env_changes)
    done = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()


@pytest.mark.parametrize("environ, modules, machine, decision, value", [
    ({}, {}, "x86_64", "set", "1"),
    ({}, {}, "AMD64", "set", "1"),
    ({"TF_ENABLE_ONEDNN_OPTS": "0"}, {}, "x86_64", "user", "0"),
    ({"TF_ENABLE_ONEDNN_OPTS": "1"}, {}, "x86_64", "user", "1"),
    ({}, {"tensorflow": object()}, "x86_64", "late", None),
    ({}, {}, "aarch64", "not_x86", None),
])
def test_enable_onednn_decides(environ, modules, machine, decision, value):
    assert runtime.enable_onednn(environ, modules, machine) == decision
    assert environ.get("TF_ENABLE_ONEDNN_OPTS") == value


def test_cpu_description_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\n"
                    "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni\n\n"
                    "processor\t: 1\nmodel name\t: Test CPU 9000\nflags\t\t: fpu\n")
    name, flags = runtime.cpu_description(str(info))
    assert name == "Test CPU 9000"
    assert flags == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni"]
    assert runtime.cpu_description(str(tmp_path / "missing"))[1] == []


@pytest.mark.skipif(not runtime.is_x86(), reason="oneDNN is turned on on x86 only")
def test_importing_the_package_turns_onednn_on():
    value, line = _probe("import ic_anogan; import tensorflow")
    assert value == "1 True"
    assert line.startswith("oneDNN on (TF_ENABLE_ONEDNN_OPTS=1 set by ic_anogan); CPU: ")


def test_the_users_choice_is_named(monkeypatch):
    monkeypatch.setattr(runtime, "_decision", "user")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    monkeypatch.setattr(runtime, "onednn_enabled", lambda: False)
    assert runtime.describe().startswith("oneDNN off (TF_ENABLE_ONEDNN_OPTS=0 set by the user)")


def test_tensorflow_imported_first_is_named_with_what_to_do(monkeypatch):
    monkeypatch.setattr(runtime, "_decision", "late")
    monkeypatch.setattr(runtime, "onednn_enabled", lambda: False)
    line = runtime.describe()
    assert line.startswith("oneDNN off (TensorFlow was imported before ic_anogan")
    assert "set TF_ENABLE_ONEDNN_OPTS=1 in the environment" in line
