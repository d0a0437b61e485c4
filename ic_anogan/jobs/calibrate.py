"""Calibration of a model directory's modes on good images, in one routine.

Training runs it on its held-out images and `--calibrate_dir` on new ones."""

from __future__ import annotations

import logging
from typing import Callable, Mapping, Optional

from ic_anogan.config import MapConfig, SearchConfig, SearchRuntime
from ic_anogan.data.image_set import ImageSet
from ic_anogan.models.model_dir import TrainedModel
from ic_anogan.scoring import scorer

log = logging.getLogger(__name__)

# progress_factory(total_img_steps, label) -> a progress callback, or None.
ProgressFactory = Callable[[int, str], Optional[scorer.Progress]]


def calibrate_modes(model: TrainedModel, good: ImageSet, settings: Mapping[str, SearchConfig],
                    percentile: float, batch_size: int, map_config: Optional[MapConfig],
                    source: str, log_dir: Optional[str] = None,
                    progress_factory: Optional[ProgressFactory] = None,
                    chunk_steps: Optional[int] = None,
                    runtime: SearchRuntime = SearchRuntime(),
                    images_name: str = "good images") -> dict:
    """Scores `good` in each mode of `settings` (mode -> its search) and writes each
    mode's thresholds and map statistics to the model directory's calibration.json.

    Args:
      percentile: each threshold is this percentile of the good images' scores.
      map_config: how the good parts' map statistics are computed; None: the
        study score only.
      source: where the good images came from, as the record says it.
      chunk_steps: search steps per graph call (progress, Ctrl-C); None: Γ/20.
      images_name: what the log calls the images ("held-out good images").

    Returns:
      mode -> the calibration record written.
    """
    records = {}
    for mode, search_config in settings.items():
        progress = (progress_factory(len(good) * search_config.steps, f"calibration ({mode})")
                    if progress_factory and search_config.steps else None)
        record = scorer.calibrate(model, good, search_config, percentile, batch_size,
                                  source=source, progress=progress, chunk_steps=chunk_steps,
                                  map_config=map_config, log_dir=log_dir, runtime=runtime)
        log.info("calibrated %s (Γ = %d) on %d %s, %gth percentile: thresholds %s",
                 mode, search_config.steps, record["count"], images_name, record["percentile"],
                 ", ".join(f"{name} {values['threshold']:.4f}"
                           for name, values in record["image_scores"].items()))
        records[mode] = record
    return records
