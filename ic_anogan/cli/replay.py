"""Replaying a run: a config file with flags over single fields (training or scoring).

The TF Model Garden pattern (a config file plus overrides). Training replays a
model directory's config.json: its `run` section gives every setting. Scoring
replays the score_config.json a scoring run wrote beside its results: its
`score` section is the request. Each flag given beside the file sets its one
field, found through the command's table from flag to field path.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING

from absl import app

from ic_anogan import config
from ic_anogan.cli import flag_table

if TYPE_CHECKING:  # the request module is imported when a scoring run is replayed
    from ic_anogan.jobs.score_request import ScoreRequest


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


def replayed_run_config(path: str, table: flag_table.FlagSet,
                        step_flags: dict) -> config.RunConfig:
    """The RunConfig of a --config file, with each flag given beside it applied.

    Args:
      table: the command's flags, each with the field path it sets.
      step_flags: section -> the boolean flag that adds or drops it.

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
        for section, name in step_flags.items():
            if table.present(name):
                run_config = dataclasses.replace(run_config, **{
                    section: (getattr(run_config, section) or _default(section))
                    if table.value(name) else None})
        given = table.field_values(only_given=True)
        for field, value in given.items():
            section = field.split(".")[0]
            if getattr(run_config, section) is None:
                row = table.row_of(field)
                if field == row.path:  # a flag setting only this section's field
                    print(f"WARNING: --{row.name} is ignored: the replayed run has no "
                          f"{section} (add --{step_flags[section]})", file=sys.stderr,
                          flush=True)
                continue
            run_config = with_field(run_config, field, value)
    except config.SettingError as e:
        raise app.UsageError(flag_table.translate(e, table)) from None
    except (TypeError, ValueError) as e:
        raise app.UsageError(f"--config={path}: {e}") from None
    return run_config


# A score row's field path -> the ScoreRequest field it sets (prefix by prefix).
_REQUEST_FIELDS = (("recalibration.good", "recalibration.good.data_dir"),
                   ("score.", ""), ("data.", "data."), ("search.", "overrides."),
                   ("calibration.", "recalibration."))


def _request_path(path: str) -> str:
    for prefix, field in _REQUEST_FIELDS:
        if path.startswith(prefix):
            return field + path[len(prefix):]
    raise KeyError(path)


def replayed_score_request(path: str, table: flag_table.FlagSet,
                           rows_given: list) -> "ScoreRequest":
    """The ScoreRequest of a scoring run's score_config.json, with each flag given beside it
    applied to its one field (`rows_given`: the rows of the flags given).

    Raises:
      app.UsageError: the file is not a scoring run's, or a value is refused (the message
        names the flag).
    """
    from ic_anogan.jobs import score_request
    try:
        values = config.read_json(path)
    except (OSError, ValueError) as e:
        raise app.UsageError(f"--config={path}: cannot read it as JSON ({e})") from None
    if not isinstance(values, dict) or not isinstance(values.get("score"), dict):
        raise app.UsageError(f"--config={path}: expected a scoring run's "
                             f"{score_request.REQUEST_FILE} (with a `score` section)")
    try:
        request = score_request.request_from_dict(values["score"])
        given = {row.path: table.parsed(row.name) for row in rows_given}
        if "recalibration.good" in given and request.recalibration is None:
            request = dataclasses.replace(request, recalibration=score_request.Recalibration(
                good=dataclasses.replace(request.data, data_dir=given["recalibration.good"],
                                         synthetic_counts=None)))
        for field, value in given.items():
            if field.startswith("map."):
                if request.recalibration is None:
                    raise app.UsageError(f"--{table.row_of(field).name}: sets how the map "
                                         "statistics are computed, at calibration: give "
                                         "--calibrate_dir too")
                request = with_field(request, f"recalibration.map_overrides.{field[4:]}",
                                     value)
            elif field.startswith("calibration.") and request.recalibration is None:
                raise app.UsageError(f"--{table.row_of(field).name}: applies to a "
                                     "recalibration: give --calibrate_dir too")
            else:
                request = with_field(request, _request_path(field), value)
    except config.SettingError as e:
        raise app.UsageError(flag_table.translate(e, table)) from None
    except (KeyError, TypeError, ValueError) as e:
        raise app.UsageError(f"--config={path}: {e}") from None
    return request
