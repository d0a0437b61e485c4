"""The one base of the errors this package raises on purpose.

An `IcAnoganError` says what was wrong with the user's input, settings,
files or cluster, and what to do; the commands print it as one line and exit
with status 1. Any other exception is a bug and keeps its traceback.
Each subclass also derives from the built-in error it used to be (mostly
ValueError), so code that caught those keeps working.
"""

from __future__ import annotations

from typing import Optional


class IcAnoganError(Exception):
    """Base of every error ic_anogan raises for a user to read and act on.

    Attributes:
      remedy: settings that fix it, by field path (`recalibration.good`) and
        value ("<good images>"; True: switch it on), for a command to add as
        its own flags; the message says the same in words.
    """

    def __init__(self, *args, remedy: Optional[dict] = None):
        super().__init__(*args)
        self.remedy = dict(remedy or {})


class SettingsFileError(IcAnoganError, ValueError):
    """A JSON file the package reads is missing or is not valid JSON."""


class MissingFileError(SettingsFileError, FileNotFoundError):
    """A file the package needs does not exist."""
