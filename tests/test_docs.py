"""The README's and docs/' code blocks stay true: every module they import exists, every
name they take from it is there, every call binds to the function's signature, every
repository file they run exists, and every flag they give is one the command defines."""

import ast
import functools
import importlib
import inspect
import os
import re
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md"] + sorted(os.path.join("docs", name) for name in os.listdir(
    os.path.join(REPO, "docs")) if name.endswith(".md"))
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
# Commands whose flags are absl flags: the shims and the installed commands.
ABSL_COMMANDS = {"train_main.py": "train", "score_main.py": "score", "export_main.py": "export",
                 "bulk_score_main.py": "bulk_score", "ic-anogan-train": "train",
                 "ic-anogan-score": "score", "ic-anogan-export": "export",
                 "ic-anogan-bulk-score": "bulk_score"}
# Repository files a block may name: anything under these folders, or a top-level script.
REPO_PATH = re.compile(r"^(?:\./)?((?:benchmarks|ic_anogan|tests|docs)/[\w/.-]+|\w+_main\.py)$")


def blocks(document: str) -> list:
    """(language, code, line number) of every fenced block of `document`."""
    text = open(os.path.join(REPO, document)).read()
    return [(m.group(1), m.group(2), text[:m.start()].count("\n") + 1)
            for m in BLOCK.finditer(text)]


def shell_commands(code: str) -> list:
    """The commands of a shell block: continuations joined, comments dropped, split at
    the shell's operators (&&, ;, |) outside quotes."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError:  # an unbalanced quote: a JSON example, not a command
            continue
        current = []
        for token in tokens + [";"]:
            if token and set(token) <= set("&;|()<>"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token)
    return commands


@functools.lru_cache(maxsize=None)
def absl_flags(command: str) -> frozenset:
    """Every flag name the command defines (from --helpfull), with its --no form."""
    done = subprocess.run([sys.executable, os.path.join(REPO, f"{command}_main.py"),
                           "--helpfull"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    listed = done.stdout + done.stderr
    names = set(re.findall(r"^\s+--(\w+)", listed, re.M))
    names |= {f"no{n}" for n in re.findall(r"^\s+--\[no\](\w+)", listed, re.M)}
    names |= set(re.findall(r"^\s+--\[no\](\w+)", listed, re.M))
    return frozenset(names)


@functools.lru_cache(maxsize=None)
def argparse_flags(script: str) -> frozenset:
    """Every option a benchmark script's argparse defines (from --help)."""
    done = subprocess.run([sys.executable, os.path.join(REPO, script), "--help"],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, (script, done.stderr[-1000:])
    return frozenset(re.findall(r"--(\w+)", done.stdout))


def _python_snippets(language: str, code: str) -> list:
    """Python source in a block: the block itself, or each `python -c "..."` of a shell
    block."""
    if language == "python":
        return [code]
    return [command[command.index("-c") + 1] for command in shell_commands(code)
            if "-c" in command and command.index("-c") + 1 < len(command)
            and any(word.endswith("python") or word.endswith("python3") for word in command)]


def check_python(source: str) -> list:
    """Problems of one snippet: imports that fail, names missing, calls that do not bind."""
    problems, names = [], {}
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ic_anogan"):
                    try:
                        names[alias.asname or alias.name] = importlib.import_module(alias.name)
                    except ImportError as e:
                        problems.append(f"import {alias.name}: {e}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ic_anogan"):
            for alias in node.names:
                try:
                    module = importlib.import_module(node.module)
                    value = getattr(module, alias.name, None)
                    if value is None:
                        value = importlib.import_module(f"{node.module}.{alias.name}")
                    names[alias.asname or alias.name] = value
                except ImportError as e:
                    problems.append(f"from {node.module} import {alias.name}: {e}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        target = _resolve(node.func, names)
        if target is None:
            if isinstance(node.func, ast.Attribute) and _resolve(node.func.value, names):
                problems.append(f"{ast.unparse(node.func)}: no such attribute")
            continue
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
                k.arg is None for k in node.keywords):
            continue
        try:
            inspect.signature(target).bind(*[None] * len(node.args),
                                           **{k.arg: None for k in node.keywords})
        except TypeError as e:
            problems.append(f"{ast.unparse(node.func)}(...): {e}")
        except ValueError:  # no signature to check (a builtin)
            pass
    return problems


def _resolve(node, names):
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, names)
        return None if base is None else getattr(base, node.attr, None)
    return None


def check_shell(code: str) -> list:
    """Problems of one shell block: repository files that do not exist, flags a command
    does not define."""
    problems = []
    for command in shell_commands(code):
        for word in command:
            path = word.split("=", 1)[1] if word.startswith("--") and "=" in word else word
            match = REPO_PATH.match(path)
            if match and not any(c in path for c in "*<>{}") and not os.path.exists(
                    os.path.join(REPO, match.group(1))):
                problems.append(f"{path}: no such file in the repository")
        script = next((w for w in command if os.path.basename(w) in ABSL_COMMANDS
                       or (w.startswith("benchmarks/") and w.endswith(".py"))), None)
        if script is None or not os.path.exists(os.path.join(REPO, script)) and \
                os.path.basename(script) not in ABSL_COMMANDS:
            continue
        defined = (absl_flags(ABSL_COMMANDS[os.path.basename(script)])
                   if os.path.basename(script) in ABSL_COMMANDS else argparse_flags(script))
        for word in command[command.index(script) + 1:]:
            flag = re.match(r"^--(\w+)", word)
            if flag and flag.group(1) not in defined and flag.group(1) != "help":
                problems.append(f"{script} {word}: no such flag")
    return problems


def check_document(document: str) -> list:
    problems = []
    for language, code, line in blocks(document):
        for snippet in _python_snippets(language, code):
            problems += [f"{document}:{line}: {p}" for p in check_python(snippet)]
        if language in ("bash", "sh", "shell", ""):
            problems += [f"{document}:{line}: {p}" for p in check_shell(code)]
    return problems


@pytest.mark.parametrize("document", DOCS)
def test_code_blocks_are_current(document):
    assert check_document(document) == []


def test_the_check_finds_a_stale_import_a_stale_flag_and_a_missing_file():
    assert check_python("from ic_anogan import synthetic") != []
    assert check_python("from ic_anogan.data import synthetic\n"
                        "synthetic.write_mvtec('d', colour=3)")[0].startswith(
        "synthetic.write_mvtec(...): got an unexpected keyword argument 'colour'")
    assert check_python("from ic_anogan.data import synthetic\nsynthetic.render_it(1)") == [
        "synthetic.render_it: no such attribute"]
    assert check_shell(".venv/bin/python train_main.py --model_dir=m --base_filterz=16") == [
        "train_main.py --base_filterz=16: no such flag"]
    assert check_shell(".venv/bin/python benchmarks/real_surfaces.py --model_dir m "
                       "--learnt") == ["benchmarks/real_surfaces.py --learnt: no such flag"]
    assert check_shell(".venv/bin/python benchmarks/nothing_here.py") == [
        "benchmarks/nothing_here.py: no such file in the repository"]


# The user's path through the docs, run for real on tiny data: the commands a user
# copies for their own images, with the docs' placeholders standing for tiny stand-ins.
# The demo and the benchmark recipes are long; they are checked above, not run.
RUN_COMMANDS = ("train_main.py", "score_main.py", "export_main.py", "bulk_score_main.py")
PLACEHOLDERS = ("/path/to/good_images", "/path/to/test", "models/line3", "models/demo",
                "out/line3", "serving/ic_anogan", "/archive/2026-11/*.png", "bulk/2026-11/")
# Appended to a documented training command: later flags win, so the doc's own flags are
# parsed and checked, and the run is tiny.
TINY_TRAINING = ["--image_size=16", "--latent_dim=8", "--base_filters=4", "--batch_size=8",
                 "--encoder_epochs=1", "--search_steps=2", "--encoder_search_steps=2",
                 "--monitor_every_epochs=0", "--synthetic_train_count=48"]


def runnable_commands() -> list:
    """The documented commands of RUN_COMMANDS whose places are all PLACEHOLDERS, each once,
    in the order a user runs them (train, score, export, bulk)."""
    found = []
    for document in DOCS:
        for language, code, _ in blocks(document):
            if language not in ("bash", "sh", ""):
                continue
            for command in shell_commands(code):
                script = next((w for w in command if w in RUN_COMMANDS), None)
                if script is None or any("=" in w and not w.startswith("--") for w in command):
                    continue  # not a user command, or one with an environment (TF_CONFIG)
                arguments = command[command.index(script) + 1:]
                places = [a.split("=", 1)[1] for a in arguments
                          if a.split("=", 1)[0] in ("--data_dir", "--model_dir", "--output_dir",
                                                    "--export_dir", "--saved_model",
                                                    "--input_pattern", "--output")]
                if all(p in PLACEHOLDERS for p in places) and (script, arguments) not in found:
                    found.append((script, arguments))
    # A training command on the user's own images first: it trains the one model.
    return sorted(found, key=lambda c: (RUN_COMMANDS.index(c[0]),
                                        not any(a.startswith("--data_dir") for a in c[1])))


def test_the_documented_user_path_runs_on_tiny_data(tmp_path):
    from ic_anogan.data import synthetic
    commands = runnable_commands()
    assert {script for script, _ in commands} == set(RUN_COMMANDS), commands
    root = synthetic.write_mvtec(str(tmp_path / "data"), image_size=16, train_good=48,
                                 test_counts={"good": 4, "short_fill": 3})
    os.makedirs(tmp_path / "archive")
    for name in sorted(os.listdir(os.path.join(root, "test", "short_fill")))[:2]:
        os.link(os.path.join(root, "test", "short_fill", name), tmp_path / "archive" / name)
    # Both model placeholders are the one model the documented training writes.
    places = {"/path/to/good_images": os.path.join(root, "train", "good"),
              "/path/to/test": os.path.join(root, "test"),
              "models/line3": str(tmp_path / "model"), "models/demo": str(tmp_path / "model"),
              "out/line3": str(tmp_path / "out"), "serving/ic_anogan": str(tmp_path / "serving"),
              "/archive/2026-11/*.png": str(tmp_path / "archive" / "*.png"),
              "bulk/2026-11/": str(tmp_path / "bulk") + "/"}
    trained = False
    for script, arguments in commands:
        arguments = [re.sub(r"=(.*)$", lambda m: "=" + places.get(m.group(1), m.group(1)), a)
                     for a in arguments]
        if script == "train_main.py":
            if trained:  # one model for every placeholder
                continue
            arguments += TINY_TRAINING + ["--epochs=1", f"--log_dir={tmp_path / 'logs'}"]
            trained = True
        elif script == "score_main.py":
            arguments += [f"--log_dir={tmp_path / 'logs'}"]
        done = subprocess.run([sys.executable, os.path.join(REPO, script), *arguments],
                              capture_output=True, text=True, timeout=600, cwd=str(tmp_path),
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert done.returncode == 0, (script, arguments, done.stderr[-2000:])
    assert os.path.exists(tmp_path / "out" / "scores.csv")
    assert os.path.exists(tmp_path / "model" / "calibration.json")
    assert sorted(os.listdir(tmp_path / "serving")) == ["1", "2"]  # both documented exports
    assert open(glob_one(str(tmp_path / "bulk" / "scores-*.csv"))).read().count("\n") == 3


def glob_one(pattern: str) -> str:
    import glob
    (found,) = glob.glob(pattern)
    return found


# The docs' tables of training flags: each names flags of train_main.py, and a numeric
# default beside a single flag is that flag's default.
FLAG_TABLES = {"README.md": "| flag |", os.path.join("docs", "training.md"): "| flag |",
               os.path.join("docs", "generator_training.md"): "| technique | setting (flag) |"}


@functools.lru_cache(maxsize=None)
def train_defaults() -> dict:
    """train_main.py's flag -> its default, as --helpfull prints it ('64', 'r1', ...)."""
    done = subprocess.run([sys.executable, os.path.join(REPO, "train_main.py"), "--helpfull"],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    defaults, flag = {}, None
    for line in done.stdout.splitlines():
        named = re.match(r"^\s+--(?:\[no\])?(\w+):", line)
        if named:
            flag = named.group(1)
        default = re.search(r"\(default: '([^']*)'\)", line)
        if default and flag:
            defaults[flag] = default.group(1)
    return defaults


def check_flag_table(document: str, header: str) -> list:
    problems, rows = [], []
    lines = open(os.path.join(REPO, document)).read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    column = 1 if "technique" in header else 0
    for cells in rows:
        named = re.findall(r"`--(?:no)?(\w+)`", cells[column])
        for flag in named:
            if flag not in absl_flags("train"):
                problems.append(f"{document}: `--{flag}`: no such flag of train_main.py")
        default = cells[column + 1]
        if len(named) == 1 and re.fullmatch(r"-?[\d.e-]+", default) and \
                named[0] in train_defaults():
            if float(default) != float(train_defaults()[named[0]]):
                problems.append(f"{document}: `--{named[0]}` default {default}, but the flag's "
                                f"is {train_defaults()[named[0]]}")
    return problems


@pytest.mark.parametrize("document", sorted(FLAG_TABLES))
def test_flag_tables_name_real_flags_and_their_defaults(document):
    assert check_flag_table(document, FLAG_TABLES[document]) == []
