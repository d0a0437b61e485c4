"""One scoring interface: a `Scorer` scores an `ImageSet` in one mode into `ScoreOutputs`.

Two scorers implement it: `SearchScorer` runs the latent search in process on
a trained model; `serving.ExportedScorer` sends the images through an
exported SavedModel, as a TF Serving client would. The score command, the
pipeline, the benchmarks and the tests all score through it. `calibrate`
scores held-out good images and stores the mode's thresholds and map
statistics.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable, Optional, Protocol

import numpy as np

from ic_anogan import config as config_lib
from ic_anogan.config import MapConfig, SearchConfig, SearchRuntime
from ic_anogan.data.image_set import ImageSet
from ic_anogan.models.model_dir import TrainedModel
from ic_anogan.scoring import (anomaly_maps, calibration, map_calibration, map_statistics,
                               threshold_evidence)
from ic_anogan.scoring.calibration_record import Calibration
from ic_anogan.scoring.map_statistics import MapStatistics
from ic_anogan.scoring.outputs import ScoreOutputs
from ic_anogan.scoring.search import LatentSearch

log = logging.getLogger(__name__)

# progress(img_steps_done) after every chunk of search steps.
Progress = Callable[[int], None]
# score_batch(begin, end, on_steps) -> ScoreOutputs of images[begin:end];
# on_steps(steps_done) may be called within the batch.
BatchScorer = Callable[[int, int, Optional[Callable[[int], None]]], ScoreOutputs]


class Scorer(Protocol):
    """Scores images in one mode with fixed settings.

    Attributes:
      mode: search, encoder or encoder_search.
      search_config: the search settings in force.
      statistics: the good parts' map statistics the map outputs use, or None.
    """

    mode: str
    search_config: SearchConfig
    statistics: Optional[MapStatistics]

    def score(self, images: ImageSet, batch_size: int,
              progress: Optional[Progress] = None) -> ScoreOutputs:
        """Scores every image, `batch_size` per call; progress gets image·steps done."""


def score_in_batches(count: int, batch_size: int, steps: int, score_batch: BatchScorer,
                     progress: Optional[Progress] = None) -> ScoreOutputs:
    """Runs `score_batch` over [0, count) in batches and joins the outputs.

    Raises:
      ValueError: batch_size is not positive, or there is nothing to score.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size={batch_size}: expected a positive integer")
    if count <= 0:
        raise ValueError("no images to score")
    reported = [-1]

    def report(done: int) -> None:
        if progress and done != reported[0]:  # a batch's last chunk is not told twice
            reported[0] = done
            progress(done)

    parts = []
    for begin in range(0, count, batch_size):
        end = min(begin + batch_size, count)
        on_steps = (lambda done, base=begin * steps, n=end - begin: report(base + n * done))
        parts.append(score_batch(begin, end, on_steps if progress else None))
        report(end * steps)
    return ScoreOutputs.concatenate(parts)


def with_maps(images: np.ndarray, outputs: ScoreOutputs,
              statistics: Optional[MapStatistics]) -> ScoreOutputs:
    """`outputs` with the map scores, standardised map and defect mask added.

    Without statistics (a model calibrated before the map scores) the
    outputs are returned as they are.
    """
    if statistics is None:
        return outputs
    maps = anomaly_maps.score_maps(images, outputs.reconstruction, statistics,
                                   latents=outputs.latent)
    return dataclasses.replace(
        outputs, map_scores={name: maps[name] for name in config_lib.MAP_SCORES},
        map_x=maps["map_x"], map_y=maps["map_y"], standardised_map=maps["standardised_map"],
        defect_mask=maps["defect_mask"])


class SearchScorer:
    """The latent search in process, on a trained model (with its encoder)."""

    def __init__(self, model: TrainedModel, search_config: SearchConfig,
                 statistics: Optional[MapStatistics] = None,
                 chunk_steps: Optional[int] = None, runtime: SearchRuntime = SearchRuntime()):
        """
        Args:
          chunk_steps: search steps per graph call, for progress and Ctrl-C;
            None: Γ/20.
          runtime: XLA and batch-norm folding (the same scores either way).

        Raises:
          ValueError: the mode needs an encoder and the model has none.
        """
        self.search = LatentSearch(model.generator, model.features, search_config,
                                   encoder=model.encoder, runtime=runtime)
        self.mode = search_config.mode
        self.search_config = search_config
        self.statistics = statistics
        self.chunk_steps = chunk_steps or max(1, search_config.steps // 20)

    def score(self, images: ImageSet, batch_size: int,
              progress: Optional[Progress] = None) -> ScoreOutputs:
        """Scores images [N, S, S, 1] in [-1, 1]; the map outputs too with statistics."""
        pixels = images.images
        steps = self.search.config.steps

        def score_batch(begin, end, on_steps):
            batch = pixels[begin:end]
            if steps > 0 and on_steps is not None:
                result = self.search.score_in_chunks(batch, self.chunk_steps, on_chunk=on_steps)
            else:
                result = self.search.score(batch)
            return ScoreOutputs.from_search(result)

        outputs = score_in_batches(len(pixels), batch_size, steps, score_batch, progress)
        return with_maps(pixels, outputs, self.statistics)


@dataclasses.dataclass
class CalibrationRun:
    """A mode's calibration: the record written, and the scored good images."""

    record: Calibration
    good: ImageSet
    # The good images' outputs, with the map outputs of the stored statistics.
    outputs: ScoreOutputs


def calibrate(model: TrainedModel, good: ImageSet, search_config: SearchConfig,
              percentile: float, batch_size: int, source: str,
              progress: Optional[Progress] = None, chunk_steps: Optional[int] = None,
              map_config: Optional[MapConfig] = MapConfig(), log_dir: Optional[str] = None,
              runtime: SearchRuntime = SearchRuntime(), threshold_rule: str = "fitted",
              outliers: str = "exclude") -> Calibration:
    """Scores good images the model never trained on and stores the mode's calibration.

    Args:
      map_config: how the good images' anomaly maps are summarised into the
        statistics the map scores need; None calibrates the study score only.
      log_dir: TensorBoard directory for the statistics' images (None: none).
      threshold_rule, outliers: as CalibrationConfig's.

    Returns:
      The `Calibration` written to `model_dir/calibration.json` (under
      `search_config.mode`; other modes' records are kept): thresholds of
      every image score with their evidence, the outliers, the map statistics.
    """
    return calibrate_run(model, good, search_config, percentile, batch_size, source, progress,
                         chunk_steps, map_config, log_dir, runtime, threshold_rule,
                         outliers).record


def calibrate_run(model: TrainedModel, good: ImageSet, search_config: SearchConfig,
                  percentile: float, batch_size: int, source: str,
                  progress: Optional[Progress] = None, chunk_steps: Optional[int] = None,
                  map_config: Optional[MapConfig] = MapConfig(), log_dir: Optional[str] = None,
                  runtime: SearchRuntime = SearchRuntime(), threshold_rule: str = "fitted",
                  outliers: str = "exclude") -> CalibrationRun:
    """`calibrate`, returning the scored good images too (for the outliers' figure)."""
    outputs = SearchScorer(model, search_config, chunk_steps=chunk_steps, runtime=runtime).score(
        good, batch_size, progress)

    def map_calibrated(rows: np.ndarray):
        return map_calibration.calibrate(good.images[rows], outputs.reconstruction[rows],
                                         map_config, seed=search_config.seed,
                                         latents=outputs.latent[rows])

    every = np.arange(len(good))
    maps = map_calibrated(every) if map_config is not None else None
    scores = {"study": outputs.anomaly_score, **(maps.good_scores if maps else {})}
    found = threshold_evidence.find_outliers(scores, good.ids)
    if found:
        log.warning("%s: %d of %d good images score far beyond the rest (%s); %s. Look at "
                    "them: a mislabelled or damaged part belongs out of the good set.",
                    search_config.mode, len(found), len(good),
                    "; ".join(f"{o['image']} ({', '.join(o['flagged_by'])})"
                              for o in found[:10]) + (" ..." if len(found) > 10 else ""),
                    "left out of the thresholds and map statistics" if outliers == "exclude"
                    else "kept in the thresholds (outliers=keep)")
    kept = every
    if found and outliers == "exclude" and len(found) < len(good):
        kept = np.setdiff1d(every, [o["index"] for o in found])
        if maps is not None:
            maps = map_calibrated(kept)
    if maps is not None:
        log.info("%s: %s", search_config.mode, map_statistics.describe(maps.statistics))
    record = calibration.calibrate(outputs.anomaly_score[kept], percentile, search_config,
                                   source, maps, threshold_rule, found, outliers)
    for warning in record.warnings:
        log.warning("%s: %s", search_config.mode, warning)
    calibration.write(model.model_dir, record)
    if log_dir and maps is not None:
        from ic_anogan.scoring import summaries
        summaries.write_map_statistics(os.path.join(log_dir, "calibration", search_config.mode),
                                       maps.statistics)
    return CalibrationRun(record, good, with_maps(good.images, outputs,
                                                  None if maps is None else maps.statistics))
