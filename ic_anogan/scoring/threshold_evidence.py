"""What a calibration's thresholds rest on, said where users look.

The good images that scored far beyond the rest are named (`find_outliers`);
each threshold's evidence (how many images, the interval of its
false-reject rate, a warning below thresholds.FEW_SCORES images) is
summarised for the score report, config.json and the export's metadata
(`evidence`), and said in one log line (`describe_evidence`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional, Sequence

import numpy as np

from ic_anogan.scoring import thresholds as thresholds_lib


def find_outliers(scores: dict, ids: Sequence[str]) -> list:
    """The good images whose score lies beyond the fitted outlier line of any image score.

    Args:
      scores: image score name -> the good images' scores [N] (cross-fitted
        for the map scores).
      ids: the N images' ids (paths), to name them.

    Returns:
      [{"index", "image", "scores": {name: value}, "flagged_by": [names]}],
      most extreme first (by how far beyond its line, in fitted scales).
    """
    flagged = {}
    for name, values in scores.items():
        values = np.asarray(values, np.float64)
        fit = thresholds_lib.fit_gumbel(values)
        for index in thresholds_lib.outlier_indices(values, fit):
            distance = (values[index] - fit.location) / fit.scale
            entry = flagged.setdefault(index, {"index": index, "image": str(ids[index]),
                                               "scores": {}, "flagged_by": [], "_far": 0.0})
            entry["flagged_by"].append(name)
            entry["_far"] = max(entry["_far"], distance)
    for index, entry in flagged.items():
        entry["scores"] = {name: float(np.asarray(values)[index])
                           for name, values in scores.items()}
    ordered = sorted(flagged.values(), key=lambda e: -e["_far"])
    return [{k: v for k, v in e.items() if k != "_far"} for e in ordered]


def few_images_warning(record: Mapping) -> Optional[str]:
    """A warning when the thresholds rest on fewer than thresholds.FEW_SCORES images."""
    count = record.get("count", 0)
    if count >= thresholds_lib.FEW_SCORES:
        return None
    return (f"the thresholds rest on {count} good images (fewer than "
            f"{thresholds_lib.FEW_SCORES}): the false-reject rate on new parts is known only "
            "within the interval recorded with each threshold; calibrate on more good images "
            "the model never trained on to narrow it")


def evidence(record: Mapping, image_score: str) -> Optional[dict]:
    """What `image_score`'s threshold rests on, for reports and exports; None for a record
    from before thresholds carried their evidence."""
    values = (record if image_score == "study" else
              record.get("image_scores", {}).get(image_score, {}))
    found = values.get("evidence") if isinstance(values, Mapping) else None
    if not isinstance(found, dict):
        return None
    summary = {"images": record.get("count"), "rule": found.get("rule"),
               "percentile": record.get("percentile"),
               "exceedances": found.get("exceedances"),
               "false_reject_interval": found.get("false_reject_interval"),
               "confidence": found.get("confidence"),
               "outliers": len(record.get("outliers", [])),
               "outlier_policy": record.get("outlier_policy")}
    warning = few_images_warning(record)
    if warning:
        summary["warning"] = warning
    return summary


def describe_evidence(summary: Optional[dict]) -> str:
    """One log line of `evidence`'s summary ("" for an old record)."""
    if not summary:
        return ""
    low, high = summary["false_reject_interval"]
    return (f"rests on {summary['images']} good images ({summary['rule']} rule; "
            f"{summary['exceedances']} of them beyond it); false-reject rate "
            f"{100 * low:.1f}% to {100 * high:.1f}% at {100 * summary['confidence']:g}% "
            "confidence")
