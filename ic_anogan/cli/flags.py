"""Flags the commands share: the search overrides, the map settings, and old flag names
that keep working with a warning.

Imports absl only (no TensorFlow, no numpy), so that flag errors answer at once.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import app, flags

from ic_anogan import config as config_lib

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


# The anomaly map's settings (config.MapConfig): flag name, MapConfig field, its choices
# (None: a number), what it sets, and its default when there is no stored setting.
_MAP_FLAGS = (
    ("map_residual", "residual", list(config_lib.MAP_RESIDUALS),
     "Residual the map statistics standardise: |x - G(z)| (absolute), x - G(z) two-sided "
     "(signed), or a comparison of structure for textured surfaces: 1 - multi-scale "
     "gradient-magnitude similarity (gradient) or 1 - local SSIM (ssim)", "absolute"),
    ("map_kernel", "kernel", ["box", "gaussian"],
     "Smoothing kernel of the anomaly map before standardising", "gaussian"),
    ("map_kernel_size", "kernel_size", None,
     "Odd side of the smoothing kernel (1: no smoothing)", 3),
    ("map_alignment_tolerance", "alignment_tolerance", None,
     "Pixels G(z) may be shifted to match each pixel before the residual counts (0: the "
     "study's pixel-by-pixel residual)", "one pixel per 64 of the image's side"),
    ("map_neighbours", "neighbours", None,
     "Standardise each image by the map statistics of its k nearest good images in latent "
     "space (0: one set of statistics for all)",
     "as many as each cross-fitted fold of the calibration images holds, at most 30"),
    ("map_area_scales", "area_scales", None,
     "Coarser scales of the standardised map whose maximum also counts, each in units of "
     "how good images' maxima vary there, so large faint regions are seen (0: one scale)", 0),
    ("pixel_percentile", "pixel_percentile", None,
     "Defect-mask threshold = this percentile of good images' standardised pixels", 99.9),
)


@dataclasses.dataclass(frozen=True)
class MapFlags:
    """The map flags of one command, by MapConfig field."""

    holders: dict

    def values(self) -> dict:
        """MapConfig field -> the flag's value (None where a flag without default is unset)."""
        return {field: holder.value for field, holder in self.holders.items()}

    def given(self) -> list:
        """The flags given on the command line."""
        return [holder for holder in self.holders.values() if holder.present]


def define_map_flags(as_stored: bool) -> MapFlags:
    """Defines the map flags: with MapConfig's defaults (training), or unset meaning "as
    stored" (`as_stored`: scoring, where they apply with --calibrate_dir only)."""
    holders = {}
    for name, field, choices, what, default in _MAP_FLAGS:
        # A default given as words is resolved from the data when calibrating.
        from_data = isinstance(default, str) and not choices
        help_text = (f"With --calibrate_dir: {what[0].lower()}{what[1:]}; default: as stored, "
                     f"else {default}." if as_stored else
                     f"{what}; default: {default}." if from_data else f"{what}.")
        if as_stored and from_data:
            help_text = (f"With --calibrate_dir: {what[0].lower()}{what[1:]}; default: as "
                         f"given at the last calibration, else {default}.")
        value = None if as_stored or from_data else default
        if choices:
            holders[field] = flags.DEFINE_enum(name, value, choices, help_text)
        elif from_data:
            holders[field] = flags.DEFINE_integer(name, value, help_text)
        elif isinstance(default, float):
            holders[field] = flags.DEFINE_float(name, value, help_text)
        else:
            holders[field] = flags.DEFINE_integer(name, value, help_text)
    return MapFlags(holders)


@dataclasses.dataclass(frozen=True)
class CalibrationFlags:
    """How thresholds are estimated from good scores (config.CalibrationConfig)."""

    threshold_rule: flags.FlagHolder
    outliers: flags.FlagHolder


def define_calibration_flags(prefix: str = "") -> CalibrationFlags:
    """Defines --threshold_rule and --calibration_outliers (`prefix`: "With
    --calibrate_dir: " in scoring)."""
    return CalibrationFlags(
        threshold_rule=flags.DEFINE_enum(
            "threshold_rule", "fitted", ["fitted", "percentile"],
            f"{prefix}fitted: each threshold is a Gumbel fit's percentile of the good scores' "
            "bulk where they are too few for their own percentile (fewer than 3 beyond it), "
            "else their percentile; percentile: the sample percentile always (docs/scoring.md,"
            " 'Thresholds from few images')."),
        outliers=flags.DEFINE_enum(
            "calibration_outliers", "exclude", ["exclude", "keep"],
            f"{prefix}good calibration images scoring far beyond the rest are named in the log,"
            " calibration.json and a figure either way; exclude leaves them out of the "
            "thresholds and map statistics, keep keeps them in."))


@dataclasses.dataclass(frozen=True)
class SearchOverrideFlags:
    """score's and export's flags that override the calibrated search, old names included."""

    steps: flags.FlagHolder
    discrimination_weight: flags.FlagHolder
    learning_rate: flags.FlagHolder
    old_learning_rate: flags.FlagHolder
    restarts: flags.FlagHolder
    clip_z: flags.FlagHolder
    seed: flags.FlagHolder
    old_seed: flags.FlagHolder

    def values(self) -> dict:
        """SearchOverrides field -> value (None: as calibrated).

        Raises:
          app.UsageError: an old flag name and its new one disagree.
        """
        return {"steps": self.steps.value,
                "discrimination_weight": self.discrimination_weight.value,
                "learning_rate": value_of(self.learning_rate, self.old_learning_rate),
                "restarts": self.restarts.value, "clip_z": self.clip_z.value,
                "seed": value_of(self.seed, self.old_seed)}


def define_search_overrides(steps_help: str) -> SearchOverrideFlags:
    """Defines the search flags of a command that scores with calibrated settings."""
    learning_rate = flags.DEFINE_float("search_learning_rate", None,
                                       "Adam step size on z; default: as calibrated.")
    seed = flags.DEFINE_integer("search_seed", None,
                                "Seed of the starting points; default: as calibrated.")
    return SearchOverrideFlags(
        steps=flags.DEFINE_integer("search_steps", None, steps_help),
        discrimination_weight=flags.DEFINE_float("discrimination_weight", None,
                                                 "λ; default: as calibrated."),
        learning_rate=learning_rate,
        old_learning_rate=define_old_name("learning_rate", learning_rate),
        restarts=flags.DEFINE_integer("restarts", None,
                                      "Random starts per image; default: as calibrated."),
        clip_z=flags.DEFINE_float("clip_z", None,
                                  "Clip z to [-clip_z, clip_z]; default: as calibrated."),
        seed=seed, old_seed=define_old_name("seed", seed))
