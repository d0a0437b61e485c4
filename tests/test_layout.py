"""The shape the project promises: absl only in the binaries, matplotlib only in plots."""

import os
import re

from conftest import REPO

PACKAGE = os.path.join(REPO, "ic_anogan")


def _modules():
    return {name: open(os.path.join(PACKAGE, name)).read()
            for name in os.listdir(PACKAGE) if name.endswith(".py")}


def test_absl_only_in_the_binaries():
    for name, source in _modules().items():
        assert not re.search(r"^\s*(from|import) absl", source, re.M), name


def test_matplotlib_only_in_plots():
    for name, source in _modules().items():
        if name != "plots.py":
            assert "matplotlib" not in source, name


def test_search_and_export_paths_never_import_plots():
    for name in ("search.py", "train.py", "models.py", "losses.py", "data.py"):
        assert "plots" not in _modules()[name], name
