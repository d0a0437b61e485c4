"""Decision thresholds from good images only.

The threshold is a percentile of the anomaly scores of good images the model
never trained on (the held-out split, or a folder given later): the 99th
percentile rejects about 1% of good parts. Defect images are never used to
pick it. The file also records the search settings the scores came from,
since a threshold is only meaningful for scores computed the same way.

One threshold per scoring mode (search, encoder, encoder_search): the modes
score the same formula at different latents, so their scales differ.
calibration.json holds {"modes": {mode: record}}; a file from before the
modes existed (one record at the top level) reads as the `search` record.

A record also holds, under "map", the good parts' anomaly-map statistics
(anomaly_maps.py) and, under "image_scores", one threshold and distribution
per image score (study, map_max, map_topk). The top-level threshold stays the
study score's, so older readers keep working; a record without "map" comes
from before the map scores and can score with `study` only.

Each threshold is estimated by thresholds.py (a fitted tail where the good
scores are few) and carries its evidence: how many scores it rests on and a
confidence interval for the false-reject rate. The record names the good
images that scored far beyond the rest ("outliers") and whether they were
left out ("outlier_policy"). Records from before say nothing of either, and
score exactly as they did.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import numpy as np

from ic_anogan import config as config_lib
from ic_anogan.config import SCORE_DEFINING, Mode, SearchConfig
from ic_anogan.core.errors import IcAnoganError
from ic_anogan.scoring.map_calibration import MapCalibration
from ic_anogan.scoring import threshold_evidence, thresholds as thresholds_lib
from ic_anogan.scoring.map_statistics import MapStatistics

CALIBRATION_FILE = "calibration.json"


# What a refusal of a damaged calibration advises; recalibration replaces the
# damaged records without reading them.
RECALIBRATE = ("recalibrate the mode with score_main.py --model_dir=<model> "
               "--calibrate_dir=<good images>")


def recalibrate_hint(mode: str) -> str:
    """What repairs `mode`'s damaged record, naming the mode (a repair that recalibrates
    another mode leaves it damaged)."""
    return (f"recalibrate it with score_main.py --model_dir=<model> --calibrate_dir=<good "
            f"images> --mode={mode}")


class CalibrationError(IcAnoganError, ValueError):
    """No usable calibration in the model directory."""


def _distribution(scores: np.ndarray, percentile: float, rule: str) -> dict:
    """The threshold, its evidence, and a summary of good images' scores."""
    estimate = thresholds_lib.estimate(scores, percentile, rule)
    evidence = estimate.to_dict()
    del evidence["outliers"]  # the record's own list names them, by image
    return {
        "threshold": estimate.threshold, "evidence": evidence,
        "mean": float(scores.mean()), "std": float(scores.std()),
        "min": float(scores.min()), "max": float(scores.max()),
        "quantiles": {str(q): float(np.percentile(scores, q)) for q in (50, 90, 95, 99, 99.9)},
        "scores": [float(s) for s in scores],
    }


def calibrate(good_scores: np.ndarray, percentile: float, search_config: SearchConfig,
              source: str, maps: Optional[MapCalibration] = None, rule: str = "fitted",
              outliers: Sequence[dict] = (), outlier_policy: str = "exclude") -> dict:
    """A calibration record: thresholds, their evidence and the good-score distributions.

    Args:
      good_scores: anomaly scores A(x) of the good images not trained on that
        the thresholds rest on (outliers already left out when excluded).
      percentile: in (0, 100]; each threshold estimates this percentile of
        unseen good parts' scores.
      search_config: how the scores were computed.
      source: where the good images came from (for the record).
      maps: the good images' map statistics and cross-fitted map scores;
        None records the study score only.
      rule: how each threshold is estimated (thresholds.THRESHOLD_RULES).
      outliers: the good images that scored far beyond the rest
        (`find_outliers`), for the record.
      outlier_policy: whether they were left out ("exclude") or kept ("keep").
    """
    scores = np.asarray(good_scores, np.float64)
    if scores.size == 0:
        raise CalibrationError("calibration needs at least one good image")
    if not 0 < percentile <= 100:
        raise CalibrationError(f"calibration_percentile={percentile}: expected a number in (0, 100]")
    if not np.all(np.isfinite(scores)):
        raise CalibrationError("calibration: some good images scored NaN or infinity; the "
                               "model's weights are not usable")
    study = _distribution(scores, percentile, rule)
    excluded = outlier_policy == "exclude"
    record = {**study, "percentile": float(percentile), "count": int(scores.size),
              "images": int(scores.size) + (len(outliers) if excluded else 0),
              "source": source, "search": config_lib.to_dict(search_config),
              "threshold_rule": rule, "outlier_policy": outlier_policy,
              "outliers": list(outliers),
              "image_scores": {"study": {k: v for k, v in study.items() if k != "scores"}}}
    if maps is not None:
        record["map"] = maps.statistics.to_dict()
        record["map_settings"] = maps.resolution
        for name, values in maps.good_scores.items():
            record["image_scores"][name] = _distribution(np.asarray(values, np.float64),
                                                         percentile, rule)
    warning = threshold_evidence.few_images_warning(record)
    if warning:
        record["warnings"] = [warning]
    return record


def map_statistics(record: dict) -> Optional[MapStatistics]:
    """The record's map statistics, or None for a record from before them.

    Records from `read_all` were checked there; this re-raises a damaged
    one's problem for records built by hand.
    """
    if "map" not in record:
        return None
    try:
        return MapStatistics.from_dict(record["map"])
    except (KeyError, TypeError, ValueError) as e:
        raise CalibrationError(f"{CALIBRATION_FILE}: the {_record_mode(record)!r} map "
                               f"statistics are unusable ({e}); "
                               f"{recalibrate_hint(_record_mode(record))}") from None


def thresholds(record: dict) -> dict:
    """image score -> threshold, for every image score the record calibrated."""
    per_score = {"study": float(record["threshold"])}
    for name, values in record.get("image_scores", {}).items():
        per_score[name] = float(values["threshold"])
    return per_score


def _record_mode(record: dict) -> str:
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
                               f"{recalibrate_hint(mode)}")

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
        search = stored_search_config(record)
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


def read_raw(model_dir: str) -> dict:
    """mode -> record as stored, unchecked (for replacing damaged records); {} when none."""
    path = os.path.join(model_dir, CALIBRATION_FILE)
    if not os.path.exists(path):
        return {}
    try:
        stored = config_lib.read_json(path)
    except ValueError as e:
        raise CalibrationError(f"{e}; {RECALIBRATE}") from None
    if not isinstance(stored, dict):
        records = None
    else:  # a file from before the modes holds one record, the search mode's
        records = stored["modes"] if "modes" in stored else {Mode.SEARCH.value: stored}
    if not isinstance(records, dict):
        raise CalibrationError(f"{path}: expected 'modes' to map a mode to a record; "
                               f"{RECALIBRATE}")
    return records


def read_all(model_dir: str, image_size: Optional[int] = None,
             latent_dim: Optional[int] = None) -> dict:
    """mode -> calibration record, every record checked (`check_record`) against the
    model's image size and latent size when given; {} when none."""
    path = os.path.join(model_dir, CALIBRATION_FILE)
    records = read_raw(model_dir)
    for mode, record in records.items():
        check_record(record, mode, path, image_size, latent_dim)
    return records


def write(model_dir: str, record: dict) -> str:
    """Stores `record` as its mode's calibration, keeping the other modes' records as
    they are (a damaged one stays refused until it is recalibrated itself)."""
    records = read_raw(model_dir)
    records[_record_mode(record)] = record
    path = os.path.join(model_dir, CALIBRATION_FILE)
    config_lib.write_json(path, {"modes": records})
    return path


def read(model_dir: str, mode: str = Mode.SEARCH.value) -> Optional[dict]:
    """The stored calibration of `mode`, or None when there is none."""
    return read_all(model_dir).get(mode)


def stored_search_config(record: dict) -> SearchConfig:
    return config_lib.from_dict(SearchConfig, record["search"])


def mismatched_settings(record: dict, search_config: SearchConfig) -> list:
    """Names of score-defining search settings that differ from the calibration's."""
    stored = {"mode": Mode.SEARCH.value, **record["search"]}
    current = config_lib.to_dict(search_config)
    return [k for k in SCORE_DEFINING if stored.get(k) != current.get(k)]
