"""Which kind of source a `data_dir` value names, without numpy or TensorFlow.

A command therefore refuses a missing folder before anything heavy loads."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional

from ic_anogan.data.image_set import GOOD, DataError


def is_mvtec_root(folder: str) -> bool:
    """An MVTec-AD-style root: train/good/ or test/ inside."""
    return (os.path.isdir(os.path.join(folder, "train", GOOD))
            or os.path.isdir(os.path.join(folder, "test")))


@dataclasses.dataclass(frozen=True)
class Source:
    kind: str  # "synthetic", "idx", "mvtec", "folder"
    path: str = ""
    normal_class: int = 0


_IDX_SPEC = re.compile(r"^idx:(?P<path>.+):(?P<cls>-?\d+)$")


def resolve_source(spec: Optional[str]) -> Source:
    """Parses a `data_dir` value (see the module docstring).

    Raises:
      DataError: the folder does not exist or the IDX spec is malformed.
    """
    if spec is None or spec == "" or spec == "synthetic":
        return Source("synthetic")
    if spec.startswith("idx:"):
        match = _IDX_SPEC.match(spec)
        if not match:
            raise DataError(f"{spec}: expected an IDX spec of the form idx:FOLDER:CLASS")
        return Source("idx", match["path"], int(match["cls"]))
    if not os.path.exists(spec):
        raise DataError(f"{spec}: folder not found")
    if not os.path.isdir(spec):
        raise DataError(f"{spec}: expected a folder of images, found a file")
    return Source("mvtec" if is_mvtec_root(spec) else "folder", spec)
