"""Flag helpers the commands share: old flag names that keep working, with a warning.

Imports absl only (no TensorFlow, no numpy), so that flag errors answer at once.
"""

from __future__ import annotations

import sys

from absl import app, flags

# Flags that mean the search's settings in score and export; their old names
# (`--learning_rate`, `--seed`, `--batch_size`) meant the GAN's in train.
SEARCH_RENAMES = {"learning_rate": "search_learning_rate", "seed": "search_seed"}


def define_old_name(old: str, new: flags.FlagHolder) -> flags.FlagHolder:
    """Defines `--old` as a deprecated spelling of the flag `new`, of the same type."""
    flag = flags.FLAGS[new.name]
    definer = {"int": flags.DEFINE_integer, "float": flags.DEFINE_float,
               "string": flags.DEFINE_string}[flag.flag_type()]
    return definer(old, None, f"Deprecated: the old name of --{new.name}, which it sets.")


def value_of(new: flags.FlagHolder, old: flags.FlagHolder):
    """`new`'s value; or `old`'s, with a deprecation warning, when only the old name is given.

    Raises:
      app.UsageError: both names are given with different values.
    """
    if not old.present:
        return new.value
    if new.present and new.value != old.value:
        raise app.UsageError(f"--{old.name}={old.value} and --{new.name}={new.value}: "
                             f"--{old.name} is the old name of --{new.name}; give one")
    print(f"WARNING: --{old.name} is deprecated; use --{new.name} (the same setting). "
          f"--{old.name} will be removed in a later release.", file=sys.stderr, flush=True)
    return old.value
