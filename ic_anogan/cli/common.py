"""Helpers shared by the binaries: logging set-up, progress, expected errors.

Nothing here defines flags; each command's module in cli/ defines its own.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Callable, Optional

from ic_anogan.core.errors import IcAnoganError

if TYPE_CHECKING:
    from ic_anogan.cli.flag_table import FlagSet
    from ic_anogan.jobs.score_request import ScoreRequest

# TensorFlow is imported by the functions that need it, so that a binary can
# refuse bad flags and places through this module without TF's start-up.


def expected_errors() -> tuple:
    """What a command reports as one line and exit status 1: the package's own errors
    (bad data, settings, model directories, calibrations, exports, a loss that blew
    up, a lost worker). Anything else is a bug and keeps its traceback."""
    return (IcAnoganError,)


def checked_request(build: Callable[[], "ScoreRequest"], table: "FlagSet") -> "ScoreRequest":
    """The score or export request `build` makes from the flags, with its places checked;
    a bad value or a missing place is a usage error naming the flag (no TensorFlow yet)."""
    from absl import app

    from ic_anogan import config
    from ic_anogan.cli import flag_table
    from ic_anogan.jobs import score_request
    try:
        request = build()
        score_request.check_sources(request)
    except config.SettingError as e:
        raise app.UsageError(flag_table.translate(e, table)) from None
    return request


def run_score_job(request: "ScoreRequest", table: "FlagSet", **kwargs) -> tuple:
    """Sets up logging and runs jobs.score_job.run: (its RunResult, None), or (None, the
    exit status) when it stopped on one of the package's own errors."""
    from absl import app

    from ic_anogan import config
    from ic_anogan.cli import flag_table
    from ic_anogan.jobs import score_job
    setup_logging()
    log_runtime()
    try:
        return score_job.run(request, **kwargs), None
    except config.SettingError as e:
        raise app.UsageError(flag_table.translate(e, table)) from None
    except expected_errors() as e:
        report_error(e, table)
        return None, 1


HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")


def grouped_help(doc: str, table: "FlagSet") -> str:
    """`--help`'s text: the command's docstring, then its flags under their groups (data,
    model, training, search, map, calibration, decision, runtime, output)."""
    from absl import flags

    from ic_anogan.cli import flag_table
    lines = [doc.strip(), "", "Flags (--helpfull adds absl's own):"]

    def render(name: str) -> None:
        flag = flags.FLAGS[name]
        prefix = "--[no]" if flag.boolean else "--"
        lines.extend(flags.text_wrap(f"{prefix}{name}: {flag.help}", indent="      ",
                                     firstline_indent="    ").splitlines())
        if flag.default is not None:
            lines.append(f"      (default: {flag.default_as_str})")

    for group in flag_table.GROUPS:
        rows = [row for row in table.rows if row.group == group]
        if rows:
            lines.append(f"  {group}:")
            for row in rows:
                render(row.name)
    if table.old:
        lines.append("  deprecated names:")
        for name in table.old:
            render(name)
    return "\n".join(lines) + "\n"


def run_command(main: Callable, table: "FlagSet", **run_args) -> None:
    """absl's app.run of a command's `main`; `--help` prints its flags by group and exits.

    absl's own --help lists the key flags of the main module, sys.argv[0] (the
    installed command or the *_main.py shim); the flags are defined in
    ic_anogan/cli/, so it would list none of them, and it could not group them.
    """
    from absl import app
    arguments = sys.argv[1:]
    arguments = arguments[:arguments.index("--")] if "--" in arguments else arguments
    if any(arg in HELP_FLAGS for arg in arguments):
        doc = sys.modules[main.__module__].__doc__ or ""
        sys.stdout.write(grouped_help(doc, table))
        sys.exit(0)
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


def report_error(error: BaseException, table: Optional["FlagSet"] = None) -> None:
    """Logs an expected error as the one line a user reads, in the command's words
    (`table`: its flags) when it names a setting or says which settings fix it."""
    from ic_anogan.cli import flag_table
    logging.getLogger("ic_anogan").error("%s", flag_table.translate(error, table))


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
