"""The flag table: each command's flags are rows made from the config fields they set, and
the same rows turn the library's field paths back into flags."""

import ast
import dataclasses
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from ic_anogan import config
from ic_anogan.cli import flag_table
from ic_anogan.scoring.calibration import CalibrationError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMANDS = ("train", "score", "export", "bulk_score")

# Each command's module defines its flags in absl's one FLAGS, so each is read in a
# process of its own.
DUMP = """
import dataclasses, json, sys
from absl import flags
from ic_anogan.cli import flag_table, {name} as command
rows = []
for row in command.ROWS:
    field = flag_table.field_at(row.path)[0] if row.is_setting else None
    holder = flags.FLAGS[row.name]
    rows.append({{"name": row.name, "path": row.path, "group": row.group,
                 "setting": row.is_setting, "own_default": row.default is not flag_table.FROM_FIELD,
                 "unset": bool(row.unset or row.fallback), "values": bool(row.values or row.parse),
                 "kind": row.kind, "own_help": row.help is not None,
                 "flag_default": holder.default, "help": holder.help,
                 "field_default": None if field is None else field.default,
                 "field_help": None if field is None else field.metadata.get("help")}})
defined = [f.name for module, fs in flags.FLAGS.flags_by_module_dict().items()
           if module.startswith("ic_anogan.cli") for f in fs]
print(json.dumps({{"rows": rows, "defined": defined, "old": list(command.FLAGS.old)}}))
"""


@pytest.fixture(scope="module")
def tables():
    found = {}
    for name in COMMANDS:
        done = subprocess.run([sys.executable, "-c", DUMP.format(name=name)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-1500:]
        found[name] = json.loads(done.stdout)
    return found


@pytest.mark.parametrize("name", COMMANDS)
def test_every_flag_is_a_row_and_every_setting_row_comes_from_its_field(tables, name):
    table = tables[name]
    rows = {row["name"]: row for row in table["rows"]}
    # Every flag the command defines is in its table (so --help lists it), once.
    assert sorted(table["defined"]) == sorted(list(rows) + table["old"])
    for row in rows.values():
        assert row["group"] in flag_table.GROUPS, row
        if not row["setting"]:
            assert row["help"], row
            continue
        # A settings row's help is its field's, its default the field's unless the row
        # says the command means otherwise.
        assert row["field_help"], f"{row['path']} has no help in config (config.setting)"
        if not (row["own_help"] or row["kind"]):
            assert row["help"].lower().count(row["field_help"][1:40].lower()) == 1, row
        if not (row["own_default"] or row["unset"] or row["values"]):
            assert row["flag_default"] == row["field_default"], row
        if row["unset"]:
            assert row["flag_default"] is None and "Default:" in row["help"] or \
                "default:" in row["help"], row


def _require_paths() -> list:
    """Every field path a config check names (the string literal after the condition)."""
    paths = []
    for path in glob.glob(os.path.join(REPO, "ic_anogan", "config", "*.py")):
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "require":
                label = node.args[1]
                assert isinstance(label, ast.Constant), ast.dump(label)
                paths.append(label.value)
    return paths


def test_every_config_check_names_a_real_field_path():
    paths = _require_paths()
    assert len(paths) > 40
    for path in paths:
        assert re.fullmatch(r"[a-z_]+\.[a-z_0-9.]+", path), path
        field, _ = flag_table.field_at(path)
        assert field.name == path.rsplit(".", 1)[1]


def test_the_library_never_speaks_the_command_line():
    """Library modules outside cli/ name settings by field path and advise in words:
    no flag names and no *_main.py (the commands add their own wording)."""
    for path in glob.glob(os.path.join(REPO, "ic_anogan", "**", "*.py"), recursive=True):
        if os.sep + "cli" + os.sep in path:
            continue
        text = open(path).read()
        assert not re.findall(r"--[a-z][a-z_]+", text), (path, re.findall(r"--[a-z][a-z_]+",
                                                                           text))
        assert "_main.py" not in text, path


def _score_table():
    rows = (flag_table.Flag("map_kernel_size", "map.kernel_size", "map", unset="as stored"),
            flag_table.Flag("mode", "score.modes", "search", kind="list", help="Modes."),
            flag_table.Flag("calibrate_dir", "recalibration.good", "calibration",
                            help="Good images."),
            flag_table.Flag("search_learning_rate", "search.learning_rate", "search"))
    return flag_table.FlagSet(rows, {}, {})


def test_commands_translate_field_paths_and_remedies_into_their_flags():
    table = _score_table()
    with pytest.raises(config.ConfigError) as refused:
        config.MapConfig(kernel_size=4)
    assert str(refused.value).startswith("map.kernel_size=4: expected an odd integer")
    assert flag_table.translate(refused.value, table).startswith(
        "--map_kernel_size=4: expected an odd integer")
    # A nested path in one command is the same field in another: training's map settings
    # live under calibration.
    nested = flag_table.FlagSet((flag_table.Flag("map_kernel_size", "calibration.map.kernel_size",
                                                 "map"),), {}, {})
    assert flag_table.translate(refused.value, nested).startswith("--map_kernel_size=4")
    # A path no flag sets stays a path; a remedy becomes the flags that apply it.
    with pytest.raises(config.ConfigError) as refused:
        config.MapConfig(folds=1)
    assert flag_table.translate(refused.value, table).startswith("map.folds=1")
    error = CalibrationError("calibration.json: modes.encoder.threshold is nan; recalibrate "
                             "mode encoder on good images", mode="encoder")
    assert flag_table.translate(error, table).endswith(
        "(--calibrate_dir=<good images> --mode=encoder)")
    assert str(error).endswith("recalibrate mode encoder on good images")
    two = config.SettingError(("search.learning_rate", "score.modes"), "contradict",
                              values=(0.1, "all"))
    assert flag_table.translate(two, table) == "--search_learning_rate=0.1, --mode=all: contradict"


def test_sections_nest_at_every_dot():
    assert flag_table.sections_from({"a.b": 1, "a.c.d": 2, "e": 3}) == {
        "a": {"b": 1, "c": {"d": 2}}, "e": 3}
    field, kind = flag_table.field_at("calibration.map.neighbours")
    assert field.name == "neighbours" and kind is int
    assert dataclasses.fields(config.MapConfig)  # the walk goes through MapConfig
