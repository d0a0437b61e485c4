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
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from ic_anogan import config as config_lib
from ic_anogan.anomaly_maps import MapCalibration, MapStatistics
from ic_anogan.config import SearchConfig

CALIBRATION_FILE = "calibration.json"
# Search settings that change the scale of the scores (jit does not).
_SCORE_DEFINING = ("mode", "steps", "discrimination_weight", "learning_rate", "beta_1", "beta_2",
                   "epsilon", "restarts", "clip_z", "seed")


class CalibrationError(ValueError):
    """No usable calibration in the model directory."""


def _distribution(scores: np.ndarray, percentile: float) -> dict:
    """The threshold and a summary of good images' scores."""
    return {
        "threshold": float(np.percentile(scores, percentile)),
        "mean": float(scores.mean()), "std": float(scores.std()),
        "min": float(scores.min()), "max": float(scores.max()),
        "quantiles": {str(q): float(np.percentile(scores, q)) for q in (50, 90, 95, 99, 99.9)},
        "scores": [float(s) for s in scores],
    }


def calibrate(good_scores: np.ndarray, percentile: float, search_config: SearchConfig,
              source: str, maps: Optional[MapCalibration] = None) -> dict:
    """A calibration record: thresholds and the good-score distributions.

    Args:
      good_scores: anomaly scores A(x) of good images not trained on.
      percentile: in (0, 100]; each threshold is this percentile of good scores.
      search_config: how the scores were computed.
      source: where the good images came from (for the record).
      maps: the good images' map statistics and cross-fitted map scores;
        None records the study score only.
    """
    scores = np.asarray(good_scores, np.float64)
    if scores.size == 0:
        raise CalibrationError("calibration needs at least one good image")
    if not 0 < percentile <= 100:
        raise CalibrationError(f"calibration_percentile={percentile}: expected a number in (0, 100]")
    if not np.all(np.isfinite(scores)):
        raise CalibrationError("calibration: some good images scored NaN or infinity; the "
                               "model's weights are not usable")
    study = _distribution(scores, percentile)
    record = {**study, "percentile": float(percentile), "count": int(scores.size),
              "source": source, "search": config_lib.to_dict(search_config),
              "image_scores": {"study": {k: v for k, v in study.items() if k != "scores"}}}
    if maps is not None:
        record["map"] = maps.statistics.to_dict()
        for name, values in maps.good_scores.items():
            record["image_scores"][name] = _distribution(np.asarray(values, np.float64),
                                                         percentile)
    return record


def map_statistics(record: dict) -> Optional[MapStatistics]:
    """The record's map statistics, or None for a record from before them."""
    if "map" not in record:
        return None
    try:
        return MapStatistics.from_dict(record["map"])
    except (KeyError, TypeError, ValueError) as e:
        raise CalibrationError(f"{CALIBRATION_FILE}: the {_record_mode(record)!r} map "
                               f"statistics are unusable ({e}); recalibrate with "
                               "score_main.py --calibrate_dir") from None


def thresholds(record: dict) -> dict:
    """image score -> threshold, for every image score the record calibrated."""
    per_score = {"study": float(record["threshold"])}
    for name, values in record.get("image_scores", {}).items():
        per_score[name] = float(values["threshold"])
    return per_score


def _record_mode(record: dict) -> str:
    return record["search"].get("mode", "search")


def read_all(model_dir: str) -> dict:
    """mode -> calibration record; empty when the model has none."""
    path = os.path.join(model_dir, CALIBRATION_FILE)
    if not os.path.exists(path):
        return {}
    stored = config_lib.read_json(path)
    records = stored["modes"] if "modes" in stored else {"search": stored}
    if not isinstance(records, dict):
        raise CalibrationError(f"{path}: expected 'modes' to map a mode to a record")
    for mode, record in records.items():
        if not isinstance(record, dict) or "threshold" not in record or "search" not in record:
            raise CalibrationError(f"{path}: the {mode!r} record needs keys 'threshold' "
                                   "and 'search'")
    return records


def write(model_dir: str, record: dict) -> str:
    """Stores `record` as its mode's calibration, keeping the other modes'."""
    records = read_all(model_dir)
    records[_record_mode(record)] = record
    path = os.path.join(model_dir, CALIBRATION_FILE)
    config_lib.write_json(path, {"modes": records})
    return path


def read(model_dir: str, mode: str = "search") -> Optional[dict]:
    """The stored calibration of `mode`, or None when there is none."""
    return read_all(model_dir).get(mode)


def stored_search_config(record: dict) -> SearchConfig:
    return config_lib.from_dict(SearchConfig, record["search"])


def mismatched_settings(record: dict, search_config: SearchConfig) -> list:
    """Names of score-defining search settings that differ from the calibration's."""
    stored = {"mode": "search", **record["search"]}
    current = config_lib.to_dict(search_config)
    return [k for k in _SCORE_DEFINING if stored.get(k) != current.get(k)]
