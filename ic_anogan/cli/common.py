"""Helpers shared by the binaries: logging set-up, progress, expected errors.

Nothing here defines flags; each command's module in cli/ defines its own.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Callable

from ic_anogan.core.errors import IcAnoganError

if TYPE_CHECKING:
    from ic_anogan.jobs.score_request import ScoreRequest

# TensorFlow is imported by the functions that need it, so that a binary can
# refuse bad flags and places through this module without TF's start-up.


def expected_errors() -> tuple:
    """What a command reports as one line and exit status 1: the package's own errors
    (bad data, settings, model directories, calibrations, exports, a loss that blew
    up, a lost worker). Anything else is a bug and keeps its traceback."""
    return (IcAnoganError,)


def checked_request(build: Callable[[], "ScoreRequest"]) -> "ScoreRequest":
    """The score or export request `build` makes from the flags, with its places checked;
    a bad value or a missing place is a usage error naming the flag (no TensorFlow yet)."""
    from absl import app

    from ic_anogan import config
    from ic_anogan.cli.flags import SEARCH_RENAMES
    from ic_anogan.jobs import score_request
    try:
        request = build()
        score_request.check_sources(request)
    except config.ConfigError as e:
        raise app.UsageError(e.as_flag(SEARCH_RENAMES)) from None
    except score_request.ScoringError as e:
        raise app.UsageError(str(e)) from None
    return request


def run_score_job(request: "ScoreRequest", **kwargs) -> tuple:
    """Sets up logging and runs jobs.score_job.run: (its RunResult, None), or (None, the
    exit status) when it stopped on one of the package's own errors."""
    from absl import app

    from ic_anogan.jobs import score_job, score_request
    setup_logging()
    log_runtime()
    try:
        return score_job.run(request, **kwargs), None
    except score_request.UsageRefusal as e:
        raise app.UsageError(str(e)) from None
    except expected_errors() as e:
        report_error(e)
        return None, 1


def adopt_command_flags() -> None:
    """Makes every flag the ic_anogan.cli modules defined a key flag of the running
    command, so that `--help` lists them.

    absl's --help shows the key flags of the main module, sys.argv[0] (the
    installed command or the *_main.py shim); the flags are defined in
    ic_anogan/cli/, so without this --help lists none of them and only
    --helpfull does, mixed with absl's own.
    """
    from absl import flags
    values = flags.FLAGS
    main_module = sys.argv[0]
    for module, defined in values.flags_by_module_dict().items():
        if module.startswith("ic_anogan.cli"):
            for flag in defined:
                values.register_key_flag_for_module(main_module, flag)


def run_command(main: Callable, **run_args) -> None:
    """absl's app.run of a command's `main`, its flags listed by --help."""
    from absl import app
    adopt_command_flags()
    app.run(main, **run_args)


def setup_logging() -> None:
    """Routes the library's `logging` records to stderr at INFO."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    logging.getLogger("ic_anogan").setLevel(logging.INFO)


def log_runtime() -> None:
    """Logs once whether oneDNN is on, and the CPU (imports TensorFlow: call it after the
    cheap flag checks)."""
    from ic_anogan.core import runtime
    runtime.log_once()


def report_error(error: BaseException) -> None:
    """Logs an expected error as the one line a user reads."""
    logging.getLogger("ic_anogan").error("%s", error)


def default_log_dir(model_dir: str, suffix: str = "") -> str:
    """tensorboard_logs/<run name>, the run name being the model directory's name."""
    name = os.path.basename(os.path.normpath(model_dir)) or "run"
    return os.path.join("tensorboard_logs", name + suffix)


class StepProgress:
    """A text progress bar over image·steps for the search (stderr)."""

    def __init__(self, total: int, label: str):
        from keras.utils import Progbar  # keras is imported by then anyway
        self.total = max(int(total), 1)
        self.bar = Progbar(self.total, unit_name="img·step", stateful_metrics=None,
                           verbose=1 if sys.stderr.isatty() else 2)
        self.label = label
        self._last_print = 0

    def __call__(self, done: int) -> None:
        if self.bar.verbose == 1:
            self.bar.update(done)
        elif done >= self.total or done - self._last_print >= self.total / 10:
            # Not a terminal: one line per tenth, not a redraw per chunk.
            self._last_print = done
            print(f"{self.label}: {done}/{self.total} img·steps "
                  f"({100.0 * done / self.total:.0f}%)", file=sys.stderr, flush=True)
