"""Calibration of a model directory's modes on good images, in one routine.

Training runs it on its held-out images, and recalibration on new good images.
Besides calibration.json it writes what a user should look at: a figure of
the good images that scored like defects (OUTLIER_FIGURE), and a summary of
each threshold's evidence in config.json ("calibration")."""

from __future__ import annotations

import logging
import os
from typing import Callable, Mapping, Optional

import numpy as np

from ic_anogan.config import MapConfig, SearchConfig, SearchRuntime
from ic_anogan.data.image_set import ImageSet
from ic_anogan.models import model_dir as model_dir_lib
from ic_anogan.models.model_dir import TrainedModel
from ic_anogan.scoring import calibration, scorer, threshold_evidence

log = logging.getLogger(__name__)

# progress_factory(total_img_steps, label) -> a progress callback, or None.
ProgressFactory = Callable[[int, str], Optional[scorer.Progress]]
# In the model directory, per mode: the good images that scored like defects.
OUTLIER_FIGURE = "calibration_outliers_{mode}.png"
# At most this many outliers are drawn (the record lists all of them).
MAX_OUTLIERS_DRAWN = 8


def calibrate_modes(model: TrainedModel, good: ImageSet, settings: Mapping[str, SearchConfig],
                    percentile: float, batch_size: int, map_config: Optional[MapConfig],
                    source: str, log_dir: Optional[str] = None,
                    progress_factory: Optional[ProgressFactory] = None,
                    chunk_steps: Optional[int] = None,
                    runtime: SearchRuntime = SearchRuntime(),
                    images_name: str = "good images", threshold_rule: str = "fitted",
                    outliers: str = "exclude") -> dict:
    """Scores `good` in each mode of `settings` (mode -> its search) and writes each
    mode's thresholds and map statistics to the model directory's calibration.json.

    Args:
      percentile: each threshold estimates this percentile of good parts' scores.
      map_config: how the good parts' map statistics are computed; None: the
        study score only.
      source: where the good images came from, as the record says it.
      chunk_steps: search steps per graph call (progress, Ctrl-C); None: Γ/20.
      images_name: what the log calls the images ("held-out good images").
      threshold_rule, outliers: as CalibrationConfig's.

    Returns:
      mode -> its `Calibration`, as written.
    """
    records = {}
    for mode, search_config in settings.items():
        progress = (progress_factory(len(good) * search_config.steps, f"calibration ({mode})")
                    if progress_factory and search_config.steps else None)
        run = scorer.calibrate_run(model, good, search_config, percentile, batch_size,
                                   source=source, progress=progress, chunk_steps=chunk_steps,
                                   map_config=map_config, log_dir=log_dir, runtime=runtime,
                                   threshold_rule=threshold_rule, outliers=outliers)
        record = run.record
        log.info("calibrated %s (Γ = %d) on %d %s, %gth percentile: thresholds %s",
                 mode, search_config.steps, record["count"], images_name, record["percentile"],
                 ", ".join(f"{name} {values['threshold']:.4f}"
                           for name, values in record["image_scores"].items()))
        for name in record["image_scores"]:
            summary_line = threshold_evidence.describe_evidence(record.evidence(name))
            log.info("  %s threshold %s", name, summary_line)
        for name, why in record.get("map_settings", {}).items():
            log.info("  map %s = %s (%s)", name, why["value"], why["reason"])
        if record.outliers:
            path = write_outlier_figure(run, os.path.join(
                model.model_dir, OUTLIER_FIGURE.format(mode=mode)))
            log.warning("%s: the good images that scored like defects are drawn in %s", mode,
                        path)
        records[mode] = record
    model_dir_lib.record(model.model_dir, calibration=summary(
        {**calibration.read_raw(model.model_dir), **records}))
    return records


def summary(records: Mapping[str, Mapping]) -> dict:
    """config.json's "calibration": per mode, each threshold and what it rests on (a
    `Calibration`, or a record as stored)."""
    result = {}
    for mode, record in records.items():
        if not isinstance(record, Mapping) or "image_scores" not in record:
            continue
        result[mode] = {
            "images": record.get("images", record.get("count")),
            "source": record.get("source"),
            "thresholds": {name: {"threshold": values.get("threshold"),
                                  **(threshold_evidence.evidence(record, name) or {})}
                           for name, values in record["image_scores"].items()},
            "outliers": [o.get("image") for o in record.get("outliers", [])],
            "map_settings": record.get("map_settings", {}),
        }
    return result


def write_outlier_figure(run: scorer.CalibrationRun, path: str) -> str:
    """A grid of the most extreme outliers: query, reconstruction, maps."""
    from ic_anogan.reporting import plots
    chosen = run.record.outliers[:MAX_OUTLIERS_DRAWN]
    index = np.array([o["index"] for o in chosen])
    outputs = run.outputs
    rows = plots.GridRows(
        images=run.good.images[index], reconstructions=outputs.reconstruction[index],
        anomaly_maps=outputs.anomaly_map[index],
        standardised_maps=None if outputs.standardised_map is None
        else outputs.standardised_map[index],
        defect_masks=None if outputs.defect_mask is None else outputs.defect_mask[index],
        maxima=None if outputs.map_x is None else np.stack(
            [outputs.map_x[index], outputs.map_y[index]], axis=1),
        captions=[f"{os.path.basename(o['image'])}\n" + ", ".join(o["flagged_by"])
                  for o in chosen])
    return plots.reconstruction_grid(rows, path, title="good images that scored like defects")
