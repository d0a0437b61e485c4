"""How a setting is checked and described: `require`, `setting`, errors naming its path.

`require` refuses a value with an error that names the setting by its field
path (`map.neighbours`); `setting` is a dataclass field with its help.

A field path is `<section>.<field>`: the section is where the setting lives in
the settings tree (`model`, `train`, `data`, `search`, `encoder`,
`calibration`, `map`) or in a request (`score`, `recalibration`, `bulk`). The
library names settings this way only; each command translates a path into its
own flag when it prints the error (ic_anogan/cli/flag_table.py).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional, Sequence, Union

from ic_anogan.core.errors import IcAnoganError

# A SettingError about a setting without a value to show (a missing one).
NO_VALUE = object()


class SettingError(IcAnoganError, ValueError):
    """A setting's value is refused; the message names it by its field path.

    Attributes:
      paths: the field paths of the settings at fault (one, or several that
        contradict each other).
      values: their values (NO_VALUE: none to show).
      problem: what is wrong and what is expected.
    """

    def __init__(self, path: Union[str, Sequence[str]], problem: str, value: Any = NO_VALUE,
                 *, values: Optional[Sequence[Any]] = None, remedy: Optional[dict] = None):
        self.paths = (path,) if isinstance(path, str) else tuple(path)
        self.values = tuple(values) if values is not None else (value,) * len(self.paths)
        self.problem = problem
        super().__init__(self.render(lambda p: p), remedy=remedy)

    def render(self, name_of: Callable[[str], str]) -> str:
        """The message with each path named by `name_of` (a command names its flags)."""
        named = ", ".join(name_of(path) if value is NO_VALUE else f"{name_of(path)}={value}"
                          for path, value in zip(self.paths, self.values))
        return f"{named}: {self.problem}"


class ConfigError(SettingError):
    """A configuration value is out of range; the message names the field path.

    Attributes:
      field, value, expected: what was wrong (`field` is the path).
    """

    def __init__(self, field: str, value: Any, expected: str):
        super().__init__(field, f"expected {expected}", value=repr(value))
        self.field, self.value, self.expected = field, value, expected


def require(condition: bool, field: str, expected: str, value: Any) -> None:
    """Raises ConfigError(field, value, expected) unless `condition` holds."""
    if not condition:
        raise ConfigError(field, value, expected)


def setting(default: Any = dataclasses.MISSING, *, help: str, choices: Sequence = (),
            default_words: Optional[str] = None, **field_args) -> Any:
    """A dataclass field that says what it sets: the command-line flags are made from it.

    Args:
      default: the field's default.
      help: what the setting does, one or two sentences (a flag's help text).
      choices: the values a string setting takes.
      default_words: what a None default means, in words ("from the image
        size"), for the help text.
    """
    metadata = {"help": help, "choices": tuple(choices), "default_words": default_words}
    return dataclasses.field(default=default, metadata=metadata, **field_args)


def is_finite(value: Any) -> bool:
    """A number, neither NaN nor infinite."""
    return isinstance(value, (int, float)) and math.isfinite(value)
