"""Configs to and from JSON, and JSON files written atomically."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Type, TypeVar

from ic_anogan.core import atomic_io
from ic_anogan.core.errors import MissingFileError, SettingsFileError

T = TypeVar("T")


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def from_dict(cls: Type[T], values: dict) -> T:
    """Builds `cls` from a dict, ignoring unknown keys from newer versions."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def write_json(path: str, payload: dict) -> None:
    """Writes JSON atomically (temp file, then rename)."""
    atomic_io.write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: str) -> dict:
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: file not found")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise SettingsFileError(f"{path}: not valid JSON ({e})") from e
