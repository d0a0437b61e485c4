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
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from ic_anogan import config as config_lib
from ic_anogan.config import SearchConfig

CALIBRATION_FILE = "calibration.json"
# Search settings that change the scale of the scores (jit does not).
_SCORE_DEFINING = ("mode", "steps", "discrimination_weight", "learning_rate", "beta_1", "beta_2",
                   "epsilon", "restarts", "clip_z", "seed")


class CalibrationError(ValueError):
    """No usable calibration in the model directory."""


def calibrate(good_scores: np.ndarray, percentile: float, search_config: SearchConfig,
              source: str) -> dict:
    """A calibration record: the threshold and the good-score distribution.

    Args:
      good_scores: anomaly scores of good images not trained on.
      percentile: in (0, 100]; the threshold is this percentile of good_scores.
      search_config: how the scores were computed.
      source: where the good images came from (for the record).
    """
    scores = np.asarray(good_scores, np.float64)
    if scores.size == 0:
        raise CalibrationError("calibration needs at least one good image")
    if not 0 < percentile <= 100:
        raise CalibrationError(f"calibration_percentile={percentile}: expected a number in (0, 100]")
    return {
        "threshold": float(np.percentile(scores, percentile)),
        "percentile": float(percentile),
        "count": int(scores.size),
        "source": source,
        "mean": float(scores.mean()), "std": float(scores.std()),
        "min": float(scores.min()), "max": float(scores.max()),
        "quantiles": {str(q): float(np.percentile(scores, q)) for q in (50, 90, 95, 99, 99.9)},
        "scores": [float(s) for s in scores],
        "search": config_lib.to_dict(search_config),
    }


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
