"""The shape the project promises: each module imports alone, in one direction, and the
binaries, the client and the search carry only what they need."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

PACKAGE = os.path.join(REPO, "ic_anogan")
MODULES = sorted(name[:-3] for name in os.listdir(PACKAGE)
                 if name.endswith(".py") and name != "__init__.py")


def _source(name):
    return open(os.path.join(PACKAGE, name + ".py")).read()


def _imports(name):
    """The ic_anogan modules `name` imports at module level (not inside functions)."""
    found = set()
    for line in _source(name).splitlines():
        match = re.match(r"from ic_anogan(?:\.(\w+))? import (.+)", line)
        if match:
            if match.group(1):
                found.add(match.group(1))
            else:
                found.update(n.strip().split(" as ")[0] for n in
                             match.group(2).strip("()").split(","))
    return found & set(MODULES)


def test_no_import_cycles():
    """A module never imports, even indirectly, a module that imports it."""
    graph = {name: _imports(name) for name in MODULES}

    def reachable(start):
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(graph[name])
        return seen

    cycles = [name for name in MODULES if name in reachable(name)]
    assert not cycles, {name: sorted(graph[name]) for name in cycles}


def _fresh_process(code):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"),
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_module_imports_alone_and_keeps_to_its_dependencies():
    """Each module imported first, with no other ic_anogan module loaded (a cycle would
    break one of them), in a fresh interpreter; then what each one pulls in. Keras 3
    imports matplotlib.pyplot itself (keras.src.visualization), so matplotlib in
    sys.modules says nothing about this package: what must not load is plots.py."""
    code = f"""
import importlib, json, sys
result = {{}}
for name in {MODULES!r}:
    for loaded in [m for m in sys.modules if m.startswith("ic_anogan")]:
        del sys.modules[loaded]
    importlib.import_module("ic_anogan." + name)
    result[name] = sorted(m[len("ic_anogan."):] for m in sys.modules
                          if m.startswith("ic_anogan."))
print(json.dumps(result))
"""
    loaded = _fresh_process(code)
    assert set(loaded) == set(MODULES)
    # Scoring, serving and export never need the trainer; the client never needs the
    # exporter; nothing on the search, serving or export path draws figures.
    for name in ("scoring", "serving", "export", "model_dir", "search", "score_pipeline",
                 "report", "score_request"):
        assert "train" not in loaded[name], (name, loaded[name])
    assert "export" not in loaded["serving"]
    for name in ("search", "export", "serving", "scoring", "train", "score_pipeline"):
        assert "plots" not in loaded[name], (name, loaded[name])
    # A refused request costs no TensorFlow: the request needs the configs only; so do
    # the TF_CONFIG check and the oneDNN switch, which must run before TensorFlow loads.
    # (runtime is what importing the package itself runs.)
    assert loaded["score_request"] == ["atomic_io", "config", "runtime", "score_request"]
    assert loaded["cluster"] == ["cluster", "runtime"]
    assert loaded["runtime"] == ["runtime"]


@pytest.mark.parametrize("binary", ["train_main.py", "score_main.py", "export_main.py"])
def test_binaries_are_thin(binary):
    """Flags, then configs, then one library call: no training, search or report code."""
    source = open(os.path.join(REPO, binary)).read()
    assert len(source.splitlines()) < 260, binary
    for forbidden in ("import tensorflow", "import numpy", "import keras", "LatentSearch",
                      "write_report", "scoring.calibrate", "load_trained_model", "train.train",
                      "export_saved_model"):
        assert forbidden not in source, (binary, forbidden)


def test_absl_flags_only_in_the_binaries():
    for name in MODULES:
        assert not re.search(r"^\s*(from|import) absl", _source(name), re.M), name
