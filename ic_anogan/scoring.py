"""Scoring a set of images end to end: search in batches, decide, write the report.

`score_main.py` is a thin binary over `score_directory`; `train_main.py` calls
`calibrate` after training. Everything written goes to a temporary name first
and is renamed, so an interrupted run leaves earlier results whole.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
from typing import Callable, Optional

import numpy as np

from ic_anogan import atomic_io, calibration, config as config_lib, data as data_lib
from ic_anogan import metrics
from ic_anogan.config import SearchConfig
from ic_anogan.search import LatentSearch, to_numpy
from ic_anogan.train import TrainedModel

log = logging.getLogger(__name__)

SCORES_FILE = "scores.csv"
METRICS_FILE = "metrics.json"
CSV_COLUMNS = ("path", "label", "defect_type", "anomaly_score", "residual_score",
               "discrimination_score", "is_anomaly")
GRID_ROWS = 8

# progress(img_steps_done) after every chunk.
Progress = Callable[[int], None]


def make_search(model: TrainedModel, search_config: SearchConfig) -> LatentSearch:
    """The search for `search_config.mode` on a trained model (with its encoder).

    Raises:
      ValueError: the mode needs an encoder and the model has none.
    """
    return LatentSearch(model.generator, model.features, search_config, encoder=model.encoder)


def run_search(search: LatentSearch, images: np.ndarray, batch_size: int,
               chunk_steps: Optional[int] = None, progress: Optional[Progress] = None
               ) -> dict:
    """Scores `images` [N, S, S, 1] in batches; returns numpy outputs for all N.

    Args:
      search: the configured search.
      images: model inputs in [-1, 1].
      batch_size: images per graph call (times restarts searches run side by side).
      chunk_steps: steps per graph call, for progress and Ctrl-C; None = all at once.
      progress: called with the number of image·steps done so far.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size={batch_size}: expected a positive integer")
    steps = search.config.steps
    parts = []
    for begin in range(0, len(images), batch_size):
        batch = images[begin:begin + batch_size]
        done_before = begin * steps
        if chunk_steps and steps > 0:
            report = (lambda done, n=len(batch), base=done_before:
                      progress(base + n * done)) if progress else None
            outputs = search.score_in_chunks(batch, chunk_steps, on_chunk=report)
        else:
            outputs = search.score(batch)
            if progress:
                progress(done_before + len(batch) * steps)
        parts.append(to_numpy(outputs))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def calibrate(model: TrainedModel, good: data_lib.ImageSet, search_config: SearchConfig,
              percentile: float, batch_size: int, source: str,
              progress: Optional[Progress] = None, chunk_steps: Optional[int] = None) -> dict:
    """Scores good images the model never trained on and stores the mode's threshold.

    Returns:
      The calibration record written to `model_dir/calibration.json` (under
      `search_config.mode`; other modes' thresholds are kept).
    """
    outputs = run_search(make_search(model, search_config), good.images, batch_size,
                         chunk_steps, progress)
    record = calibration.calibrate(outputs["anomaly_score"], percentile, search_config, source)
    calibration.write(model.model_dir, record)
    return record


@dataclasses.dataclass
class Report:
    """What a scoring run wrote and found."""

    output_dir: str
    scores_csv: str
    metrics_json: Optional[str]
    figures: list
    evaluation: dict
    threshold: Optional[float]


def scores_table(images: data_lib.ImageSet, outputs: dict,
                 threshold: Optional[float]) -> str:
    """scores.csv text: one row per image, label empty when unknown."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for i, image_id in enumerate(images.ids):
        label = int(images.labels[i])
        score = float(outputs["anomaly_score"][i])
        writer.writerow([
            image_id, "" if label < 0 else label, images.defect_types[i],
            f"{score:.6f}", f"{float(outputs['residual_score'][i]):.6f}",
            f"{float(outputs['discrimination_score'][i]):.6f}",
            "" if threshold is None else int(score > threshold)])
    return buffer.getvalue()


def _grid_selections(images: data_lib.ImageSet, scores: np.ndarray, seed: int) -> dict:
    """Image indices for the figure grids: most anomalous, and a sample of good."""
    order = np.argsort(-scores, kind="mergesort")
    selections = {"most_anomalous": order[:GRID_ROWS]}
    good = np.flatnonzero(images.labels == 0)
    if good.size:
        rng = np.random.default_rng(seed)
        selections["good_sample"] = np.sort(rng.choice(good, min(GRID_ROWS, good.size),
                                                       replace=False))
    else:
        selections["least_anomalous"] = order[::-1][:GRID_ROWS]
    return selections


def write_report(output_dir: str, images: data_lib.ImageSet, outputs: dict,
                 threshold: Optional[float], log_dir: Optional[str] = None,
                 seed: int = 0, extra: Optional[dict] = None) -> Report:
    """Writes scores.csv, metrics.json (when labelled), figures and TensorBoard summaries.

    Args:
      output_dir: created if missing; files in it are replaced atomically.
      images: the scored set.
      outputs: `run_search` outputs.
      threshold: decision threshold, or None when uncalibrated.
      log_dir: TensorBoard directory, or None for none.
      seed: picks the sample of good images shown.
      extra: more fields for metrics.json (settings, timings).
    """
    from ic_anogan import plots, summaries  # plotting stays out of the search path

    os.makedirs(output_dir, exist_ok=True)
    scores = outputs["anomaly_score"]
    scores_csv = os.path.join(output_dir, SCORES_FILE)
    atomic_io.write_text(scores_csv, scores_table(images, outputs, threshold))

    labelled = images.has_labels
    evaluation: dict = {}
    metrics_json = None
    figures = []
    if labelled:
        evaluation = metrics.evaluate(images.labels, scores, images.defect_types, threshold,
                                      outputs["anomaly_map"], images.masks, images.has_mask)
        metrics_json = os.path.join(output_dir, METRICS_FILE)
        config_lib.write_json(metrics_json, {**evaluation, **(extra or {})})
        if 0 < images.labels.sum() < len(images):
            figures.append(plots.roc_pr_curves(images.labels, scores,
                                               os.path.join(output_dir, "roc_pr.png")))
    title = "Anomaly scores" + (f" (AUROC {evaluation['auroc']:.3f})"
                                if "auroc" in evaluation else "")
    figures.append(plots.score_histogram(scores, images.defect_types,
                                         os.path.join(output_dir, "score_histogram.png"),
                                         threshold, title))
    grids = {}
    for name, index in _grid_selections(images, scores, seed).items():
        captions = [f"{images.defect_types[i] or os.path.basename(images.ids[i])}\n"
                    f"A={scores[i]:.1f}" for i in index]
        figures.append(plots.reconstruction_grid(
            images.images[index], outputs["reconstruction"][index],
            outputs["anomaly_map"][index], captions,
            os.path.join(output_dir, f"grid_{name}.png"), title=name.replace("_", " ")))
        grids[name] = (images.images[index], outputs["reconstruction"][index],
                       outputs["anomaly_map"][index])
    if log_dir:
        summaries.write_scoring_summaries(log_dir, scores, images.labels, images.defect_types,
                                          evaluation, grids)
    return Report(output_dir, scores_csv, metrics_json, figures, evaluation, threshold)
