"""Flag-table rows several commands share: the map, the search overrides, calibration.

The map settings, the search settings a scoring command overrides, and how
thresholds are calibrated (rows of flag_table.py).

Imports absl and ic_anogan.config only (no TensorFlow, no numpy), so that flag errors
answer at once.
"""

from __future__ import annotations

from ic_anogan.cli.flag_table import Flag

# The map settings a command sets, by MapConfig field.
_MAP_FLAGS = (("map_residual", "residual"), ("map_kernel", "kernel"),
              ("map_kernel_size", "kernel_size"),
              ("map_alignment_tolerance", "alignment_tolerance"),
              ("map_neighbours", "neighbours"), ("map_area_scales", "area_scales"),
              ("pixel_percentile", "pixel_percentile"))
# Map settings resolved from the data when not given (MapConfig.resolve).
_FROM_DATA = ("alignment_tolerance", "neighbours")

RECALIBRATING = "With --calibrate_dir"


def map_rows(section: str, as_stored: bool) -> tuple:
    """The map flags, setting `<section>.<field>`: with MapConfig's defaults (training), or,
    unset, as stored (`as_stored`: scoring, where they apply with --calibrate_dir)."""
    if not as_stored:
        return tuple(Flag(name, f"{section}.{field}", "map") for name, field in _MAP_FLAGS)
    return tuple(Flag(name, f"{section}.{field}", "map", when=RECALIBRATING,
                      unset=("as given at the last calibration, else {default}"
                             if field in _FROM_DATA else "as stored, else {default}"))
                 for name, field in _MAP_FLAGS)


def calibration_rows(recalibrating: bool) -> tuple:
    """How thresholds are estimated from good scores (CalibrationConfig's fields)."""
    when = RECALIBRATING if recalibrating else None
    return (Flag("calibration_percentile", "calibration.percentile", "calibration", when=when),
            Flag("threshold_rule", "calibration.threshold_rule", "calibration", when=when),
            Flag("calibration_outliers", "calibration.outliers", "calibration", when=when))


def search_override_rows(steps_unset: str) -> tuple:
    """The flags of a command that scores with calibrated search settings: each, unset,
    keeps the calibrated value (Γ: `steps_unset`); --learning_rate and --seed are old
    names."""
    calibrated = "as calibrated"
    return (Flag("search_steps", "search.steps", "search", unset=steps_unset,
                 help="Γ: latent search steps of the searching modes."),
            Flag("discrimination_weight", "search.discrimination_weight", "search",
                 unset=calibrated),
            Flag("search_learning_rate", "search.learning_rate", "search", unset=calibrated,
                 old_names=("learning_rate",)),
            Flag("restarts", "search.restarts", "search", unset=calibrated),
            Flag("clip_z", "search.clip_z", "search", unset=calibrated),
            Flag("search_seed", "search.seed", "search", unset=calibrated,
                 old_names=("seed",)))
