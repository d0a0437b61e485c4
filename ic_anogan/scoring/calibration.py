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

import os
from typing import Optional, Sequence

import numpy as np

from ic_anogan import config as config_lib
from ic_anogan.config import Mode, SearchConfig
from ic_anogan.scoring import threshold_evidence, thresholds as thresholds_lib
from ic_anogan.scoring.calibration_record import (CALIBRATION_FILE, RECALIBRATE, Calibration,
                                                  CalibrationError)
from ic_anogan.scoring.map_calibration import MapCalibration

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
              outliers: Sequence[dict] = (), outlier_policy: str = "exclude") -> Calibration:
    """A mode's calibration: thresholds, their evidence and the good-score distributions.

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
        raise CalibrationError("calibration needs at least one good image", remedy={})
    if not 0 < percentile <= 100:
        raise CalibrationError(f"calibration.percentile={percentile}: expected a number in "
                               "(0, 100]", remedy={})
    if not np.all(np.isfinite(scores)):
        raise CalibrationError("calibration: some good images scored NaN or infinity; the "
                               "model's weights are not usable", remedy={})
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
    return Calibration(record)


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
    """mode -> its `Calibration`, every record checked (`check_record`) against the
    model's image size and latent size when given; {} when none."""
    path = os.path.join(model_dir, CALIBRATION_FILE)
    return {mode: Calibration.checked(record, mode, path, image_size, latent_dim)
            for mode, record in read_raw(model_dir).items()}


def write(model_dir: str, calibration: Calibration) -> str:
    """Stores `calibration` as its mode's, keeping the other modes' records as they are
    (a damaged one stays refused until it is recalibrated itself)."""
    records = read_raw(model_dir)
    records[calibration.mode] = calibration.to_dict()
    path = os.path.join(model_dir, CALIBRATION_FILE)
    config_lib.write_json(path, {"modes": records})
    return path


def read(model_dir: str, mode: str = Mode.SEARCH.value) -> Optional[Calibration]:
    """The stored calibration of `mode`, or None when there is none."""
    return read_all(model_dir).get(mode)
