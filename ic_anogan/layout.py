"""The package's layers, in import order, and the README's map of them.

Each subpackage imports only itself and the layers listed before it
(tests/test_layout.py checks it). `python -m ic_anogan.layout` prints the
README's "Layout" block from the package itself, so the two cannot drift.
Standard library only: the layout test reads it without TensorFlow.
"""

from __future__ import annotations

import ast
import os
import sys
from typing import Optional

# (subpackage, what it holds), lowest first.
LAYERS = (
    ("core", "errors, atomic writes, the CPU runtime: no TensorFlow, no settings"),
    ("config", "every setting with its check, modes and image scores, JSON files"),
    ("data", "images: files, IDX, synthetic packages, preprocessing, the tf.data pipeline"),
    ("models", "the networks, their losses, and the model directory"),
    ("scoring", "the latent search, anomaly maps, thresholds, the Scorer interface"),
    ("training", "fitting the GAN and the encoder, checkpoints, tf.distribute"),
    ("reporting", "metrics, scores.csv, figures"),
    ("serving", "the SavedModel export and its client"),
    ("jobs", "what the commands run: train, calibrate, score, export"),
    ("cli", "the installed commands: flags, then one job"),
)
LAYER_NAMES = tuple(name for name, _ in LAYERS)

# Modules allowed past about 300 lines, each for one reason.
LONG_MODULES = {
    "data.synthetic": "one renderer of SOP and QFP packages and their defects",
}

PACKAGE_NAME = "ic_anogan"


def _package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def modules(package_dir: Optional[str] = None) -> list:
    """Dotted names (below ic_anogan) of every module in a layer; a subpackage's
    `__init__` counts as a module (named by the subpackage) when it imports anything."""
    package_dir = package_dir or _package_dir()
    found = []
    for layer in LAYER_NAMES:
        folder = os.path.join(package_dir, layer)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if name == "__init__.py":
                if _imported_names(os.path.join(folder, name), False):
                    found.append(layer)
            elif name.endswith(".py"):
                found.append(f"{layer}.{name[:-3]}")
    return found


def source_path(package_dir: str, name: str) -> str:
    """The file of module `name` (a subpackage name: its `__init__.py`)."""
    parts = name.split(".")
    candidate = os.path.join(package_dir, *parts) + ".py"
    return candidate if os.path.exists(candidate) else os.path.join(
        package_dir, *parts, "__init__.py")


def _imported_names(path: str, module_level_only: bool) -> set:
    """Dotted names below ic_anogan that the file at `path` imports."""
    tree = ast.parse(open(path).read(), path)
    found = set()

    def visit(node, in_function):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function = True
        if in_function and module_level_only:
            return
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == PACKAGE_NAME or node.module.startswith(PACKAGE_NAME + ".")):
            base = node.module[len(PACKAGE_NAME) + 1:]
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if base else alias.name)
                if base:
                    found.add(base)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE_NAME + "."):
                    found.add(alias.name[len(PACKAGE_NAME) + 1:])
        for child in ast.iter_child_nodes(node):
            visit(child, in_function)

    visit(tree, False)
    return found


def imports(package_dir: str, name: str, module_level_only: bool = True) -> set:
    """The modules of `modules()` that module `name` imports (a name imported from a
    module counts as that module)."""
    known = set(modules(package_dir))
    found = set()
    for dotted in _imported_names(source_path(package_dir, name), module_level_only):
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        if dotted and dotted != name:
            found.add(dotted)
    return found


def _summary(path: str) -> str:
    docstring = ast.get_docstring(ast.parse(open(path).read(), path)) or ""
    return docstring.strip().splitlines()[0] if docstring.strip() else ""


def render(package_dir: Optional[str] = None) -> str:
    """The README's layout block: every layer, then its modules with their first line."""
    package_dir = package_dir or _package_dir()
    lines = []
    for layer, role in LAYERS:
        lines.append(f"ic_anogan/{layer}/  {role}")
        names = [m for m in modules(package_dir) if m.startswith(layer + ".")]
        width = max((len(m) - len(layer) + 2 for m in names), default=0)
        for name in names:
            file_name = name[len(layer) + 1:] + ".py"
            lines.append(f"  {file_name:<{width}} "
                         f"{_summary(source_path(package_dir, name))}".rstrip())
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
