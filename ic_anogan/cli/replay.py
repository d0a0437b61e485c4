"""Replaying a training run: a model directory's config.json, with flags over single fields.

The TF Model Garden pattern (a config file plus overrides): the file's `run`
section gives every setting, and each flag given beside it sets its one field,
found through the command's table from flag to field path.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import app, flags

from ic_anogan import config



def _flag_value(name: str, field_values: dict):
    value = flags.FLAGS[name].value
    return field_values[name][value] if name in field_values else value


def _default(section: str):
    """RunConfig's default for one of its sections."""
    return next(f.default for f in dataclasses.fields(config.RunConfig) if f.name == section)


def with_field(settings, path: str, value):
    """`settings` with the field at `path` (e.g. calibration.map.neighbours) set; checked
    by the dataclasses as they are rebuilt."""
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(settings, **{head: value})
    return dataclasses.replace(settings, **{head: with_field(getattr(settings, head), rest,
                                                             value)})


def replayed_run_config(path: str, flag_fields: dict, flag_field_sets: dict,
                        step_flags: dict, field_values: dict) -> config.RunConfig:
    """The RunConfig of a --config file, with each flag given beside it applied.

    Args:
      flag_fields: flag name -> the field path it sets.
      flag_field_sets: flag name -> the field paths it sets together.
      step_flags: section -> the boolean flag holder that adds or drops it.
      field_values: flag name -> {flag value: field value} where the two differ.

    Raises:
      app.UsageError: the file is not a run's config.json, or a value is refused (the
        message names the flag).
    """
    try:
        values = config.read_json(path)
    except (OSError, ValueError) as e:
        raise app.UsageError(f"--config={path}: cannot read it as JSON ({e})") from None
    values = values.get("run", values) if isinstance(values, dict) else None
    if not isinstance(values, dict) or not {"model", "train", "data"} <= set(values):
        raise app.UsageError(f"--config={path}: expected a model directory's config.json "
                             "(with a `run` section: model, train, data, ...)")
    try:
        run_config = config.RunConfig.from_dict(values)
        # The steps' own flags first: they add or drop a whole section.
        for section, holder in step_flags.items():
            if holder.present:
                run_config = dataclasses.replace(run_config, **{
                    section: (getattr(run_config, section) or _default(section)) if holder.value
                    else None})
        given = [(name, field) for name, field in flag_fields.items()
                 if flags.FLAGS[name].present]
        given += [(name, field) for name, fields in flag_field_sets.items()
                  if flags.FLAGS[name].present for field in fields]
        for name, field in given:
            section = field.split(".")[0]
            if getattr(run_config, section) is None:
                if name not in flag_field_sets:
                    print(f"WARNING: --{name} is ignored: the replayed run has no {section} "
                          f"(add --{step_flags[section].name})", file=sys.stderr, flush=True)
                continue
            run_config = with_field(run_config, field, _flag_value(name, field_values))
    except config.ConfigError as e:
        raise app.UsageError(e.as_flag()) from None
    except (TypeError, ValueError) as e:
        raise app.UsageError(f"--config={path}: {e}") from None
    return run_config
