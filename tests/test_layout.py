"""The shape the project promises: subpackages in layers, each importing only the layers
before it; each module imports alone; the binaries, the client and the search carry only
what they need; the README's layout is the package's."""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

PACKAGE = os.path.join(REPO, "ic_anogan")
sys.path.insert(0, REPO)
from ic_anogan import layout  # noqa: E402  (after the repo is on the path)

MODULES = layout.modules(PACKAGE)
SUBPACKAGES = {name: name.split(".")[0] for name in MODULES}
COMMANDS = ("cli.train", "cli.score", "cli.export", "cli.bulk_score")


def test_every_module_sits_in_a_known_layer():
    assert set(SUBPACKAGES.values()) <= set(layout.LAYER_NAMES), sorted(set(SUBPACKAGES.values()))
    flat = [name for name in os.listdir(PACKAGE)
            if name.endswith(".py") and name not in ("__init__.py", "__main__.py",
                                                   "layout.py")]
    assert not flat, f"modules outside the layers: {flat}"


def test_tests_mirror_the_layers():
    """Each layer's tests sit in tests/<layer>/; only the layout and docs tests, which
    check the whole repository, stay at the top."""
    tests = os.path.join(REPO, "tests")
    folders = {name for name in os.listdir(tests) if os.path.isdir(os.path.join(tests, name))
               and not name.startswith((".", "__"))}
    assert folders <= set(layout.LAYER_NAMES), folders - set(layout.LAYER_NAMES)
    top = sorted(name for name in os.listdir(tests) if name.startswith("test_"))
    assert top == ["test_docs.py", "test_layout.py"], top


def test_layers_import_only_the_layers_before_them():
    """A module imports (at module level or inside a function) modules of its own layer
    or of layers listed before it, never of a later one."""
    order = {name: i for i, name in enumerate(layout.LAYER_NAMES)}
    wrong = []
    for name in MODULES:
        for imported in layout.imports(PACKAGE, name, module_level_only=False):
            if order[imported.split(".")[0]] > order[SUBPACKAGES[name]]:
                wrong.append(f"{name} imports {imported}")
    assert not wrong, wrong


def test_no_import_cycles():
    """A module never imports at module level, even indirectly, a module that imports it."""
    graph = {name: layout.imports(PACKAGE, name) for name in MODULES}

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
    sys.modules says nothing about this package: what must not load is plots."""
    # The commands define absl flags in one global registry, so each can be imported
    # once per process only; every binary test imports its command alone.
    names = [name for name in MODULES if name not in COMMANDS]
    code = f"""
import importlib, json, sys
result = {{}}
for name in {names!r}:
    for loaded in [m for m in sys.modules if m.startswith("ic_anogan")]:
        del sys.modules[loaded]
    importlib.import_module("ic_anogan." + name)
    result[name] = sorted(m[len("ic_anogan."):] for m in sys.modules
                          if m.startswith("ic_anogan.") and m[len("ic_anogan."):] in {MODULES!r})
print(json.dumps(result))
"""
    loaded = _fresh_process(code)
    assert set(loaded) == set(names)
    # Scoring, serving and export never need a trainer; the client never needs the
    # exporter; nothing on the search, serving or export path draws figures.
    for name in ("scoring.scorer", "serving.client", "serving.export", "models.model_dir",
                 "scoring.search", "jobs.score_job", "reporting.report", "jobs.score_request"):
        assert not any(m.startswith("training.") for m in loaded[name]), (name, loaded[name])
    assert "serving.export" not in loaded["serving.client"]
    for name in ("scoring.search", "serving.export", "serving.client", "scoring.scorer",
                 "training.gan", "jobs.score_job"):
        assert "reporting.plots" not in loaded[name], (name, loaded[name])
    # A refused request costs no TensorFlow: the request needs the configs only; so do
    # the TF_CONFIG check and the oneDNN switch, which must run before TensorFlow loads.
    # (core.runtime is what importing the package itself runs.)
    assert all(m.startswith(("config", "core.")) or m == "jobs.score_request"
               for m in loaded["jobs.score_request"]), loaded["jobs.score_request"]
    assert all(m.startswith(("config", "core.")) or m == "training.cluster"
               for m in loaded["training.cluster"]), loaded["training.cluster"]
    assert loaded["core.runtime"] == ["core.runtime"]


def test_nothing_cheap_imports_tensorflow():
    """The request check, the TF_CONFIG check and the flag definitions run before TensorFlow
    loads, so that a refused command answers at once."""
    code = """
import importlib, json, sys
for name in ("ic_anogan.jobs.score_request", "ic_anogan.training.cluster", "ic_anogan.config",
             "ic_anogan.cli.flags"):
    importlib.import_module(name)
print(json.dumps(sorted(m for m in ("tensorflow", "keras", "numpy") if m in sys.modules)))
"""
    assert _fresh_process(code) == []


@pytest.mark.parametrize("binary", ["train_main.py", "score_main.py", "export_main.py",
                                    "bulk_score_main.py"])
def test_binaries_are_shims(binary):
    """The top-level binaries only hand over to the installed commands."""
    source = open(os.path.join(REPO, binary)).read()
    assert len(source.splitlines()) < 25, binary
    assert re.search(r"from ic_anogan\.cli import \w+", source), binary
    assert "DEFINE_" not in source, binary


def test_commands_are_thin():
    """Flags, then configs, then one library call: no training, search or report code."""
    for name in [m for m in MODULES if m.startswith("cli.")]:
        source = open(layout.source_path(PACKAGE, name)).read()
        assert len(source.splitlines()) < 300, name
        for forbidden in ("import tensorflow", "import numpy", "import keras", "LatentSearch",
                          "write_report", "scorer.calibrate", "calibrate_modes",
                          "load_trained_model",
                          "gan.train(",
                          "export_saved_model"):
            assert forbidden not in source, (name, forbidden)


def test_absl_only_in_the_commands():
    for name in MODULES:
        if not name.startswith("cli."):
            source = open(layout.source_path(PACKAGE, name)).read()
            assert not re.search(r"^\s*(from|import) absl", source, re.M), name


def test_modules_stay_small():
    """About 300 lines at most; the few longer ones are named with their reason."""
    long = {name: lines for name in MODULES
            if (lines := len(open(layout.source_path(PACKAGE, name)).read().splitlines())) > 300}
    assert set(long) <= set(layout.LONG_MODULES), long


def test_readme_layout_is_the_package():
    """The README's layout section is `python -m ic_anogan.layout`'s output, verbatim."""
    readme = open(os.path.join(REPO, "README.md")).read()
    assert layout.render(PACKAGE) in readme, (
        "README.md's layout is out of date: paste `python -m ic_anogan.layout` into it")


def test_installed_commands_are_the_binaries():
    """setup.cfg's console scripts run the same commands as the top-level binaries: a bad
    flag value gets the same usage error from both, before TensorFlow loads."""
    scripts = dict(line.strip().split(" = ") for line in open(os.path.join(REPO, "setup.cfg"))
                   .read().split("console_scripts =")[1].split("\n\n")[0].strip().splitlines())
    assert scripts == {"ic-anogan-train": "ic_anogan.cli.train:run",
                       "ic-anogan-score": "ic_anogan.cli.score:run",
                       "ic-anogan-export": "ic_anogan.cli.export:run",
                       "ic-anogan-bulk-score": "ic_anogan.cli.bulk_score:run"}
    for command, target in scripts.items():
        module, function = target.split(":")
        binary = module.rsplit(".", 1)[1] + "_main.py"
        assert f"from ic_anogan.cli import {module.rsplit('.', 1)[1]}" in open(
            os.path.join(REPO, binary)).read()
        installed = os.path.join(os.path.dirname(sys.executable), command)
        assert os.path.exists(installed), f"{command} is not installed next to {sys.executable}"
        arguments, expected = {
            "ic-anogan-train": (["--model_dir=m", "--image_size=7"],
                                "--image_size=7: expected one of"),
            "ic-anogan-bulk-score": (["--saved_model=m", "--input_pattern=x", "--output=o",
                                      "--min_batch_size=0"], "--min_batch_size=0"),
        }.get(command, (["--model_dir=m", "--export_dir=e", "--mode=fastest"],
                        "--mode=fastest: expected a list of"))
        done = subprocess.run([installed, *arguments], capture_output=True, text=True,
                              timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        assert done.returncode == 1 and expected in done.stderr, (command, done.stderr[-1500:])


# Flags each command's --help must list, under the group the docs give them.
HELP_FLAGS = {
    "train": {"data": ("--data_dir", "--synthetic_package"),
              "model": ("--image_size", "--base_filters"), "training": ("--updates",),
              "map": ("--map_residual", "--map_area_scales"),
              "calibration": ("--threshold_rule",), "output": ("--model_dir", "--config")},
    "score": {"model": ("--model_dir",), "search": ("--mode", "--search_steps"),
              "map": ("--map_residual",), "calibration": ("--calibrate_dir",),
              "decision": ("--image_score",), "output": ("--output_dir", "--export_dir")},
    "export": {"model": ("--model_dir",), "search": ("--mode", "--search_steps"),
               "output": ("--export_dir",)},
    "bulk_score": {"model": ("--saved_model",), "data": ("--input_pattern",),
                   "runtime": ("--min_batch_size",), "output": ("--output",)},
}


def _help_groups(text: str) -> dict:
    """--help's flags by group: {"data": ["--data_dir", ...], ...}, in the order listed."""
    groups, current = {}, None
    for line in text.splitlines():
        if re.fullmatch(r"  [a-z ]+:", line):
            current = groups.setdefault(line.strip()[:-1], [])
        elif current is not None and line.startswith("    --"):
            current.append(re.match(r"    (--(?:\[no\])?[a-z_0-9]+)", line).group(1)
                           .replace("[no]", ""))
    return groups


@pytest.mark.parametrize("name", sorted(HELP_FLAGS))
def test_help_lists_the_commands_own_flags_by_group(name):
    """--help (not only --helpfull) lists the command's flags under their groups, from the
    installed command and from the shim alike, exits 0, and leaves absl's own out."""
    installed = os.path.join(os.path.dirname(sys.executable), "ic-anogan-" + name.replace(
        "_", "-"))
    for command in ([installed], [sys.executable, os.path.join(REPO, f"{name}_main.py")]):
        done = subprocess.run([*command, "--help"], capture_output=True, text=True,
                              timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        assert done.returncode == 0, (command, done.stderr[-1500:])
        groups = _help_groups(done.stdout)
        order = [g for g in ("data", "model", "training", "search", "map", "calibration",
                             "decision", "runtime", "output") if g in groups]
        assert list(groups)[:len(order)] == order, list(groups)
        for group, expected in HELP_FLAGS[name].items():
            assert set(expected) <= set(groups.get(group, ())), (command, group, groups)
        assert "--only_check_args" not in done.stdout  # absl's own stay under --helpfull
