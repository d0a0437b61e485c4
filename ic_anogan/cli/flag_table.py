"""One table from flag to setting: each command's flags are rows, made from the fields they set.

A row names a flag, the field path it sets (`map.neighbours`) and the group
`--help` lists it under. For a field of the settings tree (ic_anogan/config/)
the flag's type, choices, default and help come from the field itself, its
`config.setting` metadata; a row only says where the command means something
else (scoring leaves a setting "as calibrated" when its flag is not given).
Flags of a request (places, modes, the threshold) have no config field and
carry their own. The same rows translate the library's field paths back into
flags when a command prints an error, and find the field a replayed run's flag
overrides.

Imports absl and ic_anogan.config only, so that flag errors answer at once.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any, Callable, Optional, Sequence

from absl import app, flags

from ic_anogan import config

# The sections of the settings tree a field path starts with, and their classes.
SECTIONS = {"model": config.ModelConfig, "train": config.TrainConfig, "data": config.DataConfig,
            "search": config.SearchConfig, "encoder": config.EncoderConfig,
            "calibration": config.CalibrationConfig, "map": config.MapConfig}
# `--help` lists a command's flags under these headings, in this order.
GROUPS = ("data", "model", "training", "search", "map", "calibration", "decision", "runtime",
          "output")
FROM_FIELD = object()


@dataclasses.dataclass(frozen=True)
class Flag:
    """One row: a flag and the setting it sets.

    Attributes:
      name: the flag, without its dashes.
      path: the field path it sets (`search.learning_rate`, `calibration.map.kernel_size`,
        or a request's `score.modes`).
      group: its heading in `--help` (one of GROUPS).
      also: further field paths it sets to the same value (--seed: train and encoder).
      default: the flag's default; FROM_FIELD: the field's.
      unset: the flag has no default and, unset, means this (e.g. "as calibrated");
        `{default}` in it is the field's default in words.
      when: a condition the flag applies under, put before its help.
      values: flag word -> field value, where the two differ (--augment=auto: None).
      parse: turns the flag's text into the field's value (type:count pairs); it raises
        app.UsageError for text it cannot read.
      fallback: the field path whose value an unset flag takes (--encoder_batch_size).
      help, kind, choices: for a flag without a config field (kind: string, integer,
        float, bool, enum, list or multi_string); `help` also replaces a field's.
      old_names: deprecated spellings that still set it, with a warning.
      bounds: absl's lower_bound / upper_bound of a number flag without a config field.
    """

    name: str
    path: str
    group: str
    also: tuple = ()
    default: Any = FROM_FIELD
    unset: Optional[str] = None
    when: Optional[str] = None
    values: Optional[dict] = None
    parse: Optional[Callable[[Any], Any]] = None
    fallback: Optional[str] = None
    help: Optional[str] = None
    kind: Optional[str] = None
    choices: tuple = ()
    old_names: tuple = ()
    bounds: dict = dataclasses.field(default_factory=dict)

    @property
    def is_setting(self) -> bool:
        """Whether the flag sets a field of the settings tree (else a request's value)."""
        return self.path.split(".")[0] in SECTIONS


def field_at(path: str) -> tuple[dataclasses.Field, Any]:
    """The dataclass field at a settings-tree path, and its type without Optional."""
    head, *rest = path.split(".")
    cls = SECTIONS[head]
    while True:
        name = rest.pop(0)
        field = next(f for f in dataclasses.fields(cls) if f.name == name)
        kind = typing.get_type_hints(cls)[name]
        if typing.get_origin(kind) is typing.Union:
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        if not rest:
            return field, kind
        cls = kind


def _default_words(field: dataclasses.Field) -> str:
    return field.metadata.get("default_words") or str(field.default)


def flag_help(row: Flag) -> str:
    """The help text of a row's flag: the field's (or the row's own), its condition and
    what its default means."""
    field = field_at(row.path)[0] if row.is_setting else None
    text = row.help or (field.metadata.get("help") if field else None)
    if not text:
        raise ValueError(f"--{row.name}: {row.path} has no help (config.setting)")
    if row.when:
        text = f"{row.when}: {text[0].lower()}{text[1:]}"
    if row.unset:
        words = row.unset.format(default=_default_words(field)) if field else row.unset
        return f"{text} Default: {words}."
    if field is not None and flag_default(row) is None and field.metadata.get("default_words"):
        return f"{text} Default: {field.metadata['default_words']}."
    return text


def flag_default(row: Flag) -> Any:
    """The default a row's flag is defined with (None: unset)."""
    if row.unset or row.fallback:
        return None
    if row.default is not FROM_FIELD or not row.is_setting:
        return None if row.default is FROM_FIELD else row.default
    return field_at(row.path)[0].default


def _kind(row: Flag) -> tuple[str, tuple]:
    if row.kind or not row.is_setting:
        return row.kind or "string", tuple(row.choices)
    field, kind = field_at(row.path)
    choices = tuple(row.values or row.choices or field.metadata.get("choices") or ())
    if choices:
        return "enum", choices
    return {bool: "bool", int: "integer", float: "float", str: "string"}[kind], ()


_DEFINERS = {"string": flags.DEFINE_string, "integer": flags.DEFINE_integer,
             "float": flags.DEFINE_float, "bool": flags.DEFINE_bool,
             "list": flags.DEFINE_list, "multi_string": flags.DEFINE_multi_string}


def define(rows: Sequence[Flag]) -> "FlagSet":
    """Defines every row's flag (and its old names) in absl's FLAGS; the rows with their
    holders."""
    holders, old = {}, {}
    for row in rows:
        kind, choices = _kind(row)
        name, default, text = row.name, flag_default(row), flag_help(row)
        holders[name] = (flags.DEFINE_enum(name, default, list(choices), text) if kind == "enum"
                         else _DEFINERS[kind](name, default, text, **row.bounds))
        for name in row.old_names:
            old[name] = (_DEFINERS[kind] if kind != "enum" else flags.DEFINE_string)(
                name, None, f"Deprecated: the old name of --{row.name}, which it sets.")
    return FlagSet(tuple(rows), holders, old)


@dataclasses.dataclass(frozen=True)
class FlagSet:
    """A command's rows and their absl flag holders."""

    rows: tuple
    holders: dict
    old: dict = dataclasses.field(default_factory=dict)
    # Old names already warned about: one warning per run, however often it is read.
    warned: set = dataclasses.field(default_factory=set)

    def value(self, name: str) -> Any:
        """The flag's value, from its old name (with a warning) when only that is given.

        Raises:
          app.UsageError: the old and the new name disagree.
        """
        holder = self.holders[name]
        row = self.row(name)
        for old_name in row.old_names:
            old = self.old[old_name]
            if old.present:
                if holder.present and holder.value != old.value:
                    raise app.UsageError(
                        f"--{old_name}={old.value} and --{name}={holder.value}: --{old_name} "
                        f"is the old name of --{name}; give one")
                if old_name not in self.warned:
                    self.warned.add(old_name)
                    print(f"WARNING: --{old_name} is deprecated; use --{name} (the same "
                          f"setting). --{old_name} will be removed in a later release.",
                          file=sys.stderr, flush=True)
                return old.value
        return holder.value

    def parsed(self, name: str) -> Any:
        """The flag's value as its field holds it (words mapped, text parsed)."""
        row, value = self.row(name), self.value(name)
        if row.values is not None:
            value = row.values[value]
        return value if row.parse is None else row.parse(value)

    def present(self, name: str) -> bool:
        return self.holders[name].present or any(self.old[o].present
                                                 for o in self.row(name).old_names)

    def row(self, name: str) -> Flag:
        return next(r for r in self.rows if r.name == name)

    def field_values(self, prefix: str = "", only_given: bool = False) -> dict:
        """Field path (under `prefix`, without it) -> value, for every settings row whose
        path starts with it: flag words mapped to field values, unset flags taking their
        fallback's value (unless `only_given`: the flags given), rows left unset omitted."""
        values = {}
        for row in self.rows:
            paths = [p for p in (row.path,) + row.also if p.startswith(prefix)]
            if not row.is_setting or not paths or only_given and not self.present(row.name):
                continue
            value = self.parsed(row.name)
            for path in (row.path,) + row.also:
                values[path] = value
        for row in self.rows:  # a replay's given flags set their own fields only
            if row.fallback and values.get(row.path) is None and not only_given:
                values[row.path] = values.get(row.fallback, self.parsed(
                    self.row_of(row.fallback).name))
        return {path[len(prefix):]: value for path, value in values.items()
                if path.startswith(prefix)
                and (value is not None or not self.row_of(path).unset)}

    def row_of(self, path: str) -> Optional[Flag]:
        """The row whose flag sets `path`: a full path, or the tail a library error names
        (`map.kernel_size` is `calibration.map.kernel_size` in a training run)."""
        for row in self.rows:
            for own in (row.path,) + row.also:
                if own == path or own.endswith("." + path):
                    return row
        return None

    def flag_of(self, path: str) -> str:
        """`--flag` for a field path, or the path itself when no flag sets it."""
        row = self.row_of(path)
        return f"--{row.name}" if row else path

    def remedy_text(self, remedy: dict) -> str:
        """An error's remedy as this command's flags: `--calibrate_dir=<good images>`."""
        parts = []
        for path, value in remedy.items():
            flag = self.flag_of(path)
            parts.append(flag if value is True else f"{flag}={value}")
        return " ".join(parts)


def sections_from(values: dict) -> dict:
    """{"a.b": 1, "a.c": 2} -> {"a": {"b": 1, "c": 2}}, nested at every dot."""
    tree: dict = {}
    for path, value in values.items():
        node = tree
        *parents, leaf = path.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return tree


def translate(error: BaseException, table: Optional[FlagSet]) -> str:
    """An error's message in a command's words: field paths as its flags, and its
    remedy, when it has one, as the flags that apply it (`table`: None keeps the paths)."""
    name_of = table.flag_of if table else (lambda path: path)
    message = error.render(name_of) if isinstance(error, config.SettingError) else str(error)
    remedy = getattr(error, "remedy", None)
    if remedy and table is not None:
        message += f" ({table.remedy_text(remedy)})"
    return message
