"""What a scoring or export run is asked to do, checked before anything heavy is imported.

The score and export commands (cli/score.py, cli/export.py) build a
`ScoreRequest` from their flags; score_job.run carries it out. This module
needs only ic_anogan.config, so a
refused request costs no TensorFlow start-up.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Optional, Sequence

from ic_anogan import config as config_lib
from ic_anogan.config import CalibrationConfig, DataConfig, MapConfig, SearchConfig, SearchRuntime
from ic_anogan.config.checks import SettingError
from ic_anogan.core.errors import IcAnoganError


class ScoringError(IcAnoganError, ValueError):
    """The scoring request cannot be served as asked; the message says what to change."""


class RequestError(ScoringError, SettingError):
    """A request's setting contradicts another or names an unusable place, found before
    any work; the message names the setting by its field path (`score.modes`)."""


@dataclasses.dataclass(frozen=True)
class _Overrides:
    """Settings of a config asked for instead of the stored ones; None keeps a stored value.
    Each value given gets the config's own check (`CHECKED_BY`), before any model loads."""

    CHECKED_BY: ClassVar[type]

    def __post_init__(self):
        self.CHECKED_BY(**self.given())

    def given(self) -> dict:
        """The fields given (not None)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class SearchOverrides(_Overrides):
    """Search settings asked for at scoring time; None keeps the calibrated value."""

    CHECKED_BY: ClassVar[type] = SearchConfig
    steps: Optional[int] = None
    discrimination_weight: Optional[float] = None
    learning_rate: Optional[float] = None
    restarts: Optional[int] = None
    clip_z: Optional[float] = None
    seed: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class MapOverrides(_Overrides):
    """Map settings asked for at a recalibration (MapConfig's fields); None keeps the stored
    value, or resolves it again from the new images where the stored one was (see
    Recalibration)."""

    CHECKED_BY: ClassVar[type] = MapConfig
    residual: Optional[str] = None
    kernel: Optional[str] = None
    kernel_size: Optional[int] = None
    alignment_tolerance: Optional[int] = None
    neighbours: Optional[int] = None
    area_scales: Optional[int] = None
    pixel_percentile: Optional[float] = None
    prior_images: Optional[float] = None
    std_floor: Optional[float] = None
    top_fraction: Optional[float] = None
    folds: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Recalibration:
    """Recalibrate before scoring, on good images only.

    Attributes:
      good: where the good images come from.
      percentile: each threshold estimates this percentile of their scores.
      map_overrides: MapConfig fields to change; the rest as stored, except
        settings the stored record resolved from its data, which are
        resolved again for the new images (MapConfig.resolve).
      threshold_rule, outliers: as CalibrationConfig's.
    """

    good: DataConfig
    percentile: float = 99.0
    map_overrides: MapOverrides = MapOverrides()
    threshold_rule: str = "fitted"
    outliers: str = "exclude"

    def __post_init__(self):
        # The checks of the configs these values end up in, before any work.
        CalibrationConfig(percentile=self.percentile, threshold_rule=self.threshold_rule,
                          outliers=self.outliers)
        if self.good.data_dir is None:
            raise RequestError("recalibration.good", "expected a folder of good images")


@dataclasses.dataclass(frozen=True)
class ScoreRequest:
    """Everything a scoring (or export) run needs, as values (the score command's flags).

    Attributes:
      model_dir: a trained model directory; or
      saved_model: an export (EXPORT_DIR/<version>) to score through instead.
      modes: modes to run ("all": every supported); None: the default mode.
      data: the images to score.
      output_dir, log_dir: where reports and TensorBoard logs go.
      overrides: search settings instead of the calibrated ones.
      image_score: what decides; None: map_max with map statistics, else study.
      threshold: the decision threshold instead of the calibrated one (one mode).
      recalibration: recalibrate on good images first (model_dir only).
      export_dir: export the model with its modes to EXPORT_DIR/<next version>
        instead of scoring.
      batch_size: images per search call; chunk_steps: steps per graph call.
      runtime: how the in-process search runs (XLA, batch-norm folding).
    """

    model_dir: Optional[str] = None
    saved_model: Optional[str] = None
    modes: Optional[Sequence[str]] = None
    data: DataConfig = DataConfig()
    output_dir: Optional[str] = None
    log_dir: Optional[str] = None
    overrides: SearchOverrides = SearchOverrides()
    image_score: Optional[str] = None
    threshold: Optional[float] = None
    recalibration: Optional[Recalibration] = None
    export_dir: Optional[str] = None
    batch_size: int = 64
    chunk_steps: Optional[int] = None
    runtime: SearchRuntime = SearchRuntime()

    def __post_init__(self):
        if bool(self.model_dir) == bool(self.saved_model):
            raise RequestError(("score.model_dir", "score.saved_model"),
                               "give one of them, not both and not neither")
        if self.saved_model and (self.recalibration or self.export_dir
                                 or self.overrides != SearchOverrides()
                                 or self.runtime != SearchRuntime()):
            raise RequestError("score.saved_model", "an export scores with its baked-in "
                               "settings; search, calibration and export settings do not apply",
                               self.saved_model)
        for mode in self.modes or ():
            if mode not in config_lib.SCORING_MODES + ("all",):
                raise RequestError("score.modes", "expected a list of "
                                   f"{', '.join(config_lib.SCORING_MODES)} or all", mode)
        if self.image_score is not None and self.image_score not in config_lib.IMAGE_SCORES:
            raise RequestError("score.image_score", "expected one of "
                               f"{', '.join(config_lib.IMAGE_SCORES)}", self.image_score)
        if self.threshold is not None and not (
                isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)):
            raise RequestError("score.threshold", "expected a finite number",
                               repr(self.threshold))
        if self.batch_size <= 0:
            raise RequestError("score.batch_size", "expected a positive integer",
                               self.batch_size)
        if self.chunk_steps is not None and self.chunk_steps <= 0:
            raise RequestError("score.chunk_steps", "expected a positive integer",
                               self.chunk_steps)


# Where a scoring run writes the request it ran (in its output folder), for a replay.
REQUEST_FILE = "score_config.json"


def request_to_dict(request: ScoreRequest) -> dict:
    """The request as plain JSON values (score_config.json's `score` section)."""
    values = dataclasses.asdict(request)
    values["modes"] = None if request.modes is None else list(request.modes)
    return values


def request_from_dict(values: dict) -> ScoreRequest:
    """The inverse of `request_to_dict`; unknown keys (from newer versions) are ignored and
    every value is checked as the request is built.

    Raises:
      SettingError: a value is refused (naming its field path).
      TypeError: `values` is not a request's JSON object.
    """
    if not isinstance(values, dict):
        raise TypeError(f"expected a JSON object, not {type(values).__name__}")
    recalibration = values.get("recalibration")
    if recalibration is not None:
        recalibration = config_lib.from_dict(Recalibration, {
            **recalibration, "good": config_lib.from_dict(DataConfig, recalibration["good"]),
            "map_overrides": config_lib.from_dict(
                MapOverrides, recalibration.get("map_overrides") or {})})
    return config_lib.from_dict(ScoreRequest, {
        **values, "data": config_lib.from_dict(DataConfig, values.get("data") or {}),
        "overrides": config_lib.from_dict(SearchOverrides, values.get("overrides") or {}),
        "runtime": config_lib.from_dict(SearchRuntime, values.get("runtime") or {}),
        "recalibration": recalibration})


def check_sources(request: ScoreRequest) -> None:
    """Refuses a missing model directory, export or image folder, before anything loads.

    The request's own values were checked when it was built, so a command
    with a bad flag value and a missing folder names the flag first.

    Raises:
      RequestError: naming the setting and the place.
    """
    import os

    from ic_anogan.data import sources
    from ic_anogan.data.image_set import DataError
    for path, place in (("score.model_dir", request.model_dir),
                        ("score.saved_model", request.saved_model)):
        if place and not os.path.isdir(place):
            raise RequestError(path, "not a folder" if os.path.exists(place) else "not found",
                               place)
    folders = [("data.data_dir", request.data.data_dir)]
    if request.recalibration:
        folders.append(("recalibration.good", request.recalibration.good.data_dir))
    for path, folder in folders:
        try:
            sources.resolve_source(folder)
        except DataError as e:
            raise RequestError(path, str(e).removeprefix(f"{folder}: "), folder) from None
