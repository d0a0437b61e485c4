"""`Calibration`: one mode's calibration record, as calibration.json stores it, checked.

A record is the JSON object calibration.json holds under its mode (see
calibration.py for what it contains). `Calibration` keeps that object whole, so
a record rewritten by this version keeps every key a newer one added, and
reads it through typed properties: the thresholds, the search they were
computed with, the map statistics and what each threshold rests on.
`check_record` is the one check of a stored record, naming the field at fault.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Iterator, Optional

from ic_anogan import config as config_lib
from ic_anogan.config import SCORE_DEFINING, Mode, SearchConfig
from ic_anogan.core.errors import IcAnoganError
from ic_anogan.scoring import threshold_evidence
from ic_anogan.scoring.map_statistics import MapStatistics

CALIBRATION_FILE = "calibration.json"

# What a refusal of a damaged calibration advises; recalibration replaces the
# damaged records without reading them.
RECALIBRATE = "recalibrate the mode on good images"


def recalibrate_hint(mode: str) -> str:
    """What repairs `mode`'s damaged record, naming the mode (a repair that recalibrates
    another mode leaves it damaged)."""
    return f"recalibrate mode {mode} on good images"


def recalibration_remedy(mode: Optional[str] = None) -> dict:
    """The settings that recalibrate (`mode`, when one is named) on good images."""
    return {"recalibration.good": "<good images>", **({"score.modes": mode} if mode else {})}


class CalibrationError(IcAnoganError, ValueError):
    """No usable calibration in the model directory; its remedy, unless given, is a
    recalibration on good images (of `mode`, when one is named)."""

    def __init__(self, message: str, *, mode: Optional[str] = None,
                 remedy: Optional[dict] = None):
        super().__init__(message, remedy=recalibration_remedy(mode) if remedy is None
                         else remedy)


class Calibration(Mapping):
    """One mode's calibration record: read-only, its stored keys readable as a mapping.

    Build it with `Calibration.checked` from a stored object (the check names
    the field at fault), or get it from calibration.calibrate / read_all.
    """

    def __init__(self, record: Mapping):
        self._record = copy.deepcopy(dict(record))

    @classmethod
    def checked(cls, record, mode: str, where: str, image_size: Optional[int] = None,
                latent_dim: Optional[int] = None) -> "Calibration":
        """The record stored under `mode` in `where`, checked by `check_record`.

        Raises:
          CalibrationError: naming `where`, the field and what was expected.
        """
        check_record(record, mode, where, image_size, latent_dim)
        return cls(record)

    def __getitem__(self, key: str):
        return self._record[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._record)

    def __len__(self) -> int:
        return len(self._record)

    def __repr__(self) -> str:
        return (f"Calibration(mode={self.mode!r}, thresholds={self.thresholds}, "
                f"count={self.get('count')})")

    def to_dict(self) -> dict:
        """The record as calibration.json stores it (a copy)."""
        return copy.deepcopy(self._record)

    @property
    def mode(self) -> str:
        return _record_mode(self._record)

    @property
    def threshold(self) -> float:
        """The study score's threshold (the top-level one older readers know)."""
        return float(self._record["threshold"])

    @property
    def thresholds(self) -> dict:
        """image score -> threshold, for every image score the record calibrated."""
        per_score = {"study": self.threshold}
        for name, values in self._record.get("image_scores", {}).items():
            per_score[name] = float(values["threshold"])
        return per_score

    @property
    def search_config(self) -> SearchConfig:
        """The search the good scores were computed with."""
        return config_lib.from_dict(SearchConfig, self._record["search"])

    @property
    def map_statistics(self) -> Optional[MapStatistics]:
        """The good parts' map statistics, or None for a record from before them.

        Records from `read_all` were checked there; this re-raises a damaged
        one's problem for records built by hand.
        """
        if "map" not in self._record:
            return None
        try:
            return MapStatistics.from_dict(self._record["map"])
        except (KeyError, TypeError, ValueError) as e:
            raise CalibrationError(f"{CALIBRATION_FILE}: the {self.mode!r} map statistics "
                                   f"are unusable ({e}); {recalibrate_hint(self.mode)}",
                                   mode=self.mode) from None

    @property
    def outliers(self) -> list:
        """The good images that scored far beyond the rest ([] for older records)."""
        return list(self._record.get("outliers", []))

    @property
    def warnings(self) -> list:
        return list(self._record.get("warnings", []))

    def evidence(self, image_score: str) -> Optional[dict]:
        """What `image_score`'s threshold rests on (threshold_evidence.evidence)."""
        return threshold_evidence.evidence(self._record, image_score)

    def mismatched_settings(self, search_config: SearchConfig) -> list:
        """Names of score-defining search settings that differ from the calibration's."""
        stored = {"mode": Mode.SEARCH.value, **self._record["search"]}
        current = config_lib.to_dict(search_config)
        return [k for k in SCORE_DEFINING if stored.get(k) != current.get(k)]


def _record_mode(record: Mapping) -> str:
    return record["search"].get("mode", Mode.SEARCH.value)


def _finite_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def check_record(record, mode: str, where: str, image_size: Optional[int] = None,
                 latent_dim: Optional[int] = None) -> None:
    """Refuses a damaged record, naming the field, its value and what was expected.

    Checks every threshold (a finite number), the percentile, the search
    settings (a valid SearchConfig of `mode`) and the map statistics (shape
    `image_size` squared when given, finite, deviations positive, a finite
    pixel threshold).

    Raises:
      CalibrationError: naming `where` (the file) and the field.
    """
    def refuse(field: str, problem: str):
        raise CalibrationError(f"{where}: modes.{mode}.{field} {problem}; "
                               f"{recalibrate_hint(mode)}", mode=mode)

    if mode not in config_lib.SCORING_MODES:
        raise CalibrationError(f"{where}: unknown mode {mode!r} (expected "
                               f"{', '.join(config_lib.SCORING_MODES)}); {RECALIBRATE}")
    if not isinstance(record, dict):
        refuse("", f"is {type(record).__name__}; expected an object")
    for key in ("threshold", "search"):
        if key not in record:
            refuse(key, "is missing")
    if not _finite_number(record["threshold"]):
        refuse("threshold", f"is {record['threshold']!r}; expected a finite number")
    if "percentile" in record and not (_finite_number(record["percentile"])
                                       and 0 < record["percentile"] <= 100):
        refuse("percentile", f"is {record['percentile']!r}; expected a number in (0, 100]")
    if not isinstance(record["search"], dict):
        refuse("search", f"is {record['search']!r}; expected an object")
    try:
        search = config_lib.from_dict(SearchConfig, record["search"])
    except (TypeError, ValueError) as e:
        refuse("search", f"is unusable ({e})")
    if search.mode != mode:
        refuse("search.mode", f"is {search.mode!r}; expected {mode!r}, the mode it is stored "
               "under")
    scores = record.get("image_scores", {})
    if not isinstance(scores, dict):
        refuse("image_scores", f"is {scores!r}; expected an object")
    for name, values in scores.items():
        if name not in config_lib.IMAGE_SCORES:
            continue  # a score of a newer version: not read by this one
        value = values.get("threshold") if isinstance(values, dict) else None
        if not _finite_number(value):
            refuse(f"image_scores.{name}.threshold", f"is {value!r}; expected a finite number")
    if "map" in record:
        try:
            MapStatistics.from_dict(record["map"], image_size, latent_dim)
        except (TypeError, ValueError) as e:
            refuse("map", f"is unusable: {e}")
        missing = [n for n in config_lib.MAP_SCORES if n not in scores]
        if missing:
            refuse("image_scores", f"has no threshold for {', '.join(missing)}, which its map "
                   "statistics score")
