"""How every setting is checked: `require`, and the error that names the field."""

from __future__ import annotations

import math
from typing import Any, Optional

from ic_anogan.core.errors import IcAnoganError


class ConfigError(IcAnoganError, ValueError):
    """A configuration value is out of range; the message names the field.

    Attributes:
      field, value, expected: what was wrong, so that a binary can name its
        own flag when the flag's name differs from the field's.
    """

    def __init__(self, field: str, value: Any, expected: str):
        super().__init__(f"{field}={value!r}: expected {expected}")
        self.field, self.value, self.expected = field, value, expected

    def as_flag(self, renames: Optional[dict] = None) -> str:
        """The message as a usage error naming the flag (`renames`: field -> flag)."""
        flag = (renames or {}).get(self.field, self.field)
        return f"--{flag}={self.value!r}: expected {self.expected}"


def require(condition: bool, field: str, expected: str, value: Any) -> None:
    if not condition:
        raise ConfigError(field, value, expected)




def is_finite(value: Any) -> bool:
    """A number, neither NaN nor infinite."""
    return isinstance(value, (int, float)) and math.isfinite(value)
