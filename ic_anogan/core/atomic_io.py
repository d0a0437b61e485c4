"""Writes that never leave a half-written file or folder behind.

Everything the project writes goes to a temporary name in the same folder and
is renamed into place; a rename within one file system is atomic, so a reader
(or TF Serving watching a folder) sees either the old artefact or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from typing import Iterator, Optional


def _temp_path(path: str, suffix: str = "") -> str:
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                                    suffix=".tmp" + suffix, dir=folder)
    os.close(handle)
    # mkstemp makes the file private (0600); artefacts are read by other users
    # (TF Serving, TensorBoard), so give it the mode a plain open() would.
    os.chmod(temp, 0o666 & ~_umask())
    return temp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` atomically."""
    with replace_file(path) as temp:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def replace_file(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path; on success it replaces `path`, on error it is removed.

    `suffix` keeps an extension some writers insist on (Keras wants `.weights.h5`).
    """
    temp = _temp_path(path, suffix)
    try:
        yield temp
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise


@contextlib.contextmanager
def new_directory(path: str) -> Iterator[str]:
    """Yields a temporary folder that is renamed to `path` when the block succeeds.

    Raises:
      FileExistsError: `path` exists already; it is never overwritten.
    """
    if os.path.exists(path):
        raise FileExistsError(f"{path}: exists already; refusing to overwrite it")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    temp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                            dir=parent)
    os.chmod(temp, 0o777 & ~_umask())
    try:
        yield temp
        os.rename(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def unwritable_reason(folder: str) -> Optional[str]:
    """Why files cannot be written into `folder` (made if missing), or None when they can.

    Checked by writing and removing a probe file in the nearest existing
    folder, which catches read-only file systems and permissions alike, and
    leaves nothing behind: no folder is created.
    """
    if os.path.exists(folder) and not os.path.isdir(folder):
        return "exists and is a file; expected a folder"
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        return f"{existing} is a file, so no folder can be made under it"
    try:
        handle, probe = tempfile.mkstemp(prefix=".write_probe.", dir=existing)
        os.close(handle)
        os.remove(probe)
    except OSError as e:
        return f"cannot write in {existing} ({e.strerror or e})"
    return None


@contextlib.contextmanager
def new_numbered_directory(base: str, first: int) -> Iterator[dict]:
    """Yields {"temp": folder}; on success the folder becomes base/<n>, n >= first and free.

    The number is taken at the rename, which is atomic, so two writers that
    both looked for the next free number end as two numbers: the one whose
    rename finds the folder taken moves on to the next. After the block,
    the dict's "path" holds where the folder went; on error it is removed.
    """
    os.makedirs(base, exist_ok=True)
    temp = tempfile.mkdtemp(prefix=".version.", suffix=".tmp", dir=base)
    os.chmod(temp, 0o777 & ~_umask())
    result = {"temp": temp}
    try:
        yield result
        number = first
        while True:
            target = os.path.join(base, str(number))
            try:
                if os.path.exists(target):  # never replace even an empty folder
                    raise FileExistsError(errno.EEXIST, "exists", target)
                os.rename(temp, target)
                break
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                number += 1
        result["path"] = target
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
