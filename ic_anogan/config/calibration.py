"""Settings of calibration: how held-out good images set thresholds and map statistics."""

from __future__ import annotations

import dataclasses
from typing import Optional

from ic_anogan.config.checks import is_finite, require, setting
from ic_anogan.config.modes import DEFAULT_STEPS, Mode
from ic_anogan.config.maps import MapConfig
from ic_anogan.config.scoring import SearchConfig, search_config_for_mode

# How a threshold is estimated from good scores, and what happens to good images
# that score far beyond the rest (scoring/thresholds.py).
THRESHOLD_RULES = ("fitted", "percentile")
OUTLIER_POLICIES = ("exclude", "keep")


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    """How the held-out good images set each mode's thresholds and map statistics.

    Attributes:
      encoder_search_steps: Γ of the encoder_search mode.
      percentile: each threshold estimates this percentile of unseen good
        parts' scores.
      batch_size: images per search call.
      map: how the good parts' map statistics are computed; None: study score only.
      threshold_rule: `fitted`: a Gumbel fit of the good scores' bulk where
        they are too few for their own percentile, else the percentile;
        `percentile`: the sample percentile always (before this rule)
        (scoring/thresholds.py).
      outliers: good images scoring far beyond the fit are named in the log
        and calibration.json either way; `exclude` leaves them out of the
        thresholds and the map statistics, `keep` keeps them in.
    """

    encoder_search_steps: int = setting(
        DEFAULT_STEPS[Mode.ENCODER_SEARCH.value],
        help="Γ of the 'encoder_search' mode (search started at E(x)).")
    percentile: float = setting(
        99.0, help="Each threshold estimates this percentile of unseen good parts' scores "
        "(the threshold rule says how).")
    batch_size: int = setting(64, help="Images per search call.")
    map: Optional[MapConfig] = MapConfig()
    threshold_rule: str = setting(
        "fitted", choices=THRESHOLD_RULES, help="fitted: each threshold is a Gumbel fit's "
        "percentile of the good scores' bulk where they are too few for their own percentile "
        "(fewer than 3 beyond it), else their percentile; percentile: the sample percentile "
        "always (docs/scoring.md, 'Thresholds from few images').")
    outliers: str = setting(
        "exclude", choices=OUTLIER_POLICIES, help="Good calibration images scoring far beyond "
        "the rest are named in the log, calibration.json and a figure either way; exclude "
        "leaves them out of the thresholds and map statistics, keep keeps them in.")

    def __post_init__(self):
        require(isinstance(self.encoder_search_steps, int)
                 and self.encoder_search_steps >= 0, "calibration.encoder_search_steps",
                 "an integer >= 0", self.encoder_search_steps)
        require(is_finite(self.percentile) and 0 < self.percentile <= 100,
                 "calibration.percentile", "a number in (0, 100]", self.percentile)
        require(isinstance(self.batch_size, int) and self.batch_size > 0,
                 "calibration.batch_size", "a positive integer", self.batch_size)
        require(self.threshold_rule in THRESHOLD_RULES, "calibration.threshold_rule",
                 f"one of {THRESHOLD_RULES}", self.threshold_rule)
        require(self.outliers in OUTLIER_POLICIES, "calibration.outliers",
                 f"one of {OUTLIER_POLICIES}", self.outliers)

    def for_mode(self, mode: str, search: SearchConfig) -> SearchConfig:
        """`search`'s settings in `mode`, with this calibration's Γ for encoder_search."""
        return search_config_for_mode(
            mode, search, steps=self.encoder_search_steps if mode == Mode.ENCODER_SEARCH else None)
