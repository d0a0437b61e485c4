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

from ic_anogan import anomaly_maps, atomic_io, calibration, config as config_lib
from ic_anogan import data as data_lib, metrics
from ic_anogan.anomaly_maps import MapStatistics
from ic_anogan.config import MapConfig, SearchConfig
from ic_anogan.search import LatentSearch, to_numpy
from ic_anogan.train import TrainedModel

log = logging.getLogger(__name__)

SCORES_FILE = "scores.csv"
METRICS_FILE = "metrics.json"
CSV_COLUMNS = ("path", "label", "defect_type", "anomaly_score", "residual_score",
               "discrimination_score", "is_anomaly", "map_score", "map_x", "map_y")
# Which output holds each image score.
SCORE_OUTPUT = {"study": "anomaly_score", "map_max": "map_max", "map_topk": "map_topk"}
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
              progress: Optional[Progress] = None, chunk_steps: Optional[int] = None,
              map_config: Optional[MapConfig] = MapConfig(), log_dir: Optional[str] = None
              ) -> dict:
    """Scores good images the model never trained on and stores the mode's calibration.

    Args:
      map_config: how the good images' anomaly maps are summarised into the
        statistics the map scores need; None calibrates the study score only.
      log_dir: TensorBoard directory for the statistics' images (None: none).

    Returns:
      The calibration record written to `model_dir/calibration.json` (under
      `search_config.mode`; other modes' records are kept): thresholds of
      every image score, and the map statistics.
    """
    outputs = run_search(make_search(model, search_config), good.images, batch_size,
                         chunk_steps, progress)
    maps = None
    if map_config is not None:
        maps = anomaly_maps.calibrate(good.images, outputs["reconstruction"], map_config,
                                      seed=search_config.seed)
        log.info("%s: %s", search_config.mode, anomaly_maps.describe(maps.statistics))
    record = calibration.calibrate(outputs["anomaly_score"], percentile, search_config, source,
                                   maps)
    calibration.write(model.model_dir, record)
    if log_dir and maps is not None:
        from ic_anogan import summaries
        summaries.write_map_statistics(os.path.join(log_dir, "calibration", search_config.mode),
                                       maps.statistics)
    return record


def add_map_outputs(images: np.ndarray, outputs: dict,
                    statistics: Optional[MapStatistics]) -> dict:
    """`outputs` with the map scores, standardised map and defect mask added.

    Without statistics (a model calibrated before the map scores) the
    outputs are returned as they are.
    """
    if statistics is None:
        return outputs
    return {**outputs, **anomaly_maps.score_maps(images, outputs["reconstruction"], statistics)}


def available_scores(outputs: dict) -> list:
    """The image scores `outputs` can be judged by, in IMAGE_SCORES order."""
    return [name for name in config_lib.IMAGE_SCORES if SCORE_OUTPUT[name] in outputs]


def score_values(outputs: dict, image_score: str) -> np.ndarray:
    """The per-image values of `image_score`.

    Raises:
      ValueError: the outputs have no such score (no map statistics).
    """
    key = SCORE_OUTPUT.get(image_score)
    if key is None:
        raise ValueError(f"image_score={image_score!r}: expected one of "
                         f"{config_lib.IMAGE_SCORES}")
    if key not in outputs:
        raise ValueError(f"image_score={image_score!r} needs the good parts' map statistics, "
                         "which this model has not calibrated; add them with score_main.py "
                         "--calibrate_dir=<good images>, or use image_score 'study'")
    return np.asarray(outputs[key])


def ranked(values: np.ndarray) -> np.ndarray:
    """Scores for ranking metrics: a non-finite score (NaN pixels, a broken model) ranks
    above every finite one, so garbage is counted as found anomalous, never as good."""
    values = np.asarray(values, np.float64)
    return np.where(np.isfinite(values), values, np.finfo(np.float64).max)


@dataclasses.dataclass
class Report:
    """What a scoring run wrote and found."""

    output_dir: str
    scores_csv: str
    metrics_json: Optional[str]
    figures: list
    evaluation: dict
    threshold: Optional[float]


def scores_table(images: data_lib.ImageSet, outputs: dict, threshold: Optional[float],
                 image_score: str = "study") -> str:
    """scores.csv text: one row per image, label empty when unknown.

    `is_anomaly` is `image_score` against `threshold`; the map columns are
    empty when the model has no map statistics.
    """
    decision = score_values(outputs, image_score)
    has_map = "map_max" in outputs
    map_values = outputs[config_lib.map_score_name(image_score)] if has_map else None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for i, image_id in enumerate(images.ids):
        label = int(images.labels[i])
        map_columns = ([f"{float(map_values[i]):.6f}", int(outputs["map_x"][i]),
                        int(outputs["map_y"][i])] if has_map else ["", "", ""])
        writer.writerow([
            image_id, "" if label < 0 else label, images.defect_types[i],
            f"{float(outputs['anomaly_score'][i]):.6f}", f"{float(outputs['residual_score'][i]):.6f}",
            f"{float(outputs['discrimination_score'][i]):.6f}",
            # Not "<=" so that a NaN score is anomalous: never judged good unscored.
            "" if threshold is None else int(not decision[i] <= threshold), *map_columns])
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


def evaluate_scores(images: data_lib.ImageSet, outputs: dict, image_score: str,
                    thresholds: dict) -> dict:
    """metrics.json's content: the decision's figures, every image score's, pixel figures.

    Args:
      thresholds: image score -> threshold (None or missing: no decision).
    """
    per_score = {}
    for name in available_scores(outputs):
        per_score[name] = metrics.evaluate(images.labels, ranked(score_values(outputs, name)),
                                           images.defect_types, thresholds.get(name))
    evaluation = {**per_score[image_score], "image_score": image_score,
                  "image_scores": per_score}
    if images.masks is not None and np.any(images.has_mask):
        evaluation.update(metrics.pixel_metrics(
            images.labels, images.defect_types, images.masks, images.has_mask,
            outputs["anomaly_map"], outputs.get("standardised_map"), outputs.get("defect_mask")))
    return evaluation


def write_report(output_dir: str, images: data_lib.ImageSet, outputs: dict,
                 threshold: Optional[float], log_dir: Optional[str] = None,
                 seed: int = 0, extra: Optional[dict] = None, image_score: str = "study",
                 thresholds: Optional[dict] = None,
                 map_statistics: Optional[MapStatistics] = None) -> Report:
    """Writes scores.csv, metrics.json (when labelled), figures and TensorBoard summaries.

    Args:
      output_dir: created if missing; files in it are replaced atomically.
      images: the scored set.
      outputs: `run_search` outputs, with `add_map_outputs`' when the model has map
        statistics.
      threshold: the decision threshold of `image_score`, or None when uncalibrated.
      log_dir: TensorBoard directory, or None for none.
      seed: picks the sample of good images shown.
      extra: more fields for metrics.json (settings, timings).
      image_score: the score the decision (is_anomaly, histogram, grids) uses.
      thresholds: every image score's threshold, for the side-by-side figures.
      map_statistics: shown in TensorBoard beside the maps.
    """
    from ic_anogan import plots, summaries  # plotting stays out of the search path

    thresholds = dict(thresholds or {})
    thresholds[image_score] = threshold
    raw_scores = score_values(outputs, image_score)
    unscorable = int(np.sum(~np.isfinite(raw_scores)))
    if unscorable:
        log.warning("%d image(s) scored NaN or infinity (non-finite pixels?); they are judged "
                    "anomalous", unscorable)
    scores = ranked(raw_scores)
    os.makedirs(output_dir, exist_ok=True)
    scores_csv = os.path.join(output_dir, SCORES_FILE)
    atomic_io.write_text(scores_csv, scores_table(images, outputs, threshold, image_score))

    labelled = images.has_labels
    evaluation: dict = {}
    metrics_json = None
    figures = []
    if labelled:
        evaluation = evaluate_scores(images, outputs, image_score, thresholds)
        metrics_json = os.path.join(output_dir, METRICS_FILE)
        config_lib.write_json(metrics_json, {**evaluation, **(extra or {})})
        if 0 < images.labels.sum() < len(images):
            figures.append(plots.roc_pr_curves(images.labels, scores,
                                               os.path.join(output_dir, "roc_pr.png")))
    title = f"Image score {image_score}" + (f" (AUROC {evaluation['auroc']:.3f})"
                                            if "auroc" in evaluation else "")
    finite = np.isfinite(raw_scores)
    if finite.any():
        figures.append(plots.score_histogram(
            raw_scores[finite], [t for t, keep in zip(images.defect_types, finite) if keep],
            os.path.join(output_dir, "score_histogram.png"), threshold, title,
            x_label=plots.SCORE_LABELS.get(image_score, image_score)))
    grids = {}
    standardised = outputs.get("standardised_map")
    for name, index in _grid_selections(images, scores, seed).items():
        captions = [f"{images.defect_types[i] or os.path.basename(images.ids[i])}\n"
                    f"{image_score}={scores[i]:.2f}" for i in index]
        grid = plots.GridRows(
            images=images.images[index], reconstructions=outputs["reconstruction"][index],
            anomaly_maps=outputs["anomaly_map"][index],
            standardised_maps=None if standardised is None else standardised[index],
            defect_masks=None if "defect_mask" not in outputs else outputs["defect_mask"][index],
            true_masks=None if images.masks is None else np.where(
                images.has_mask[index, None, None, None], images.masks[index], 0.0),
            maxima=None if "map_x" not in outputs else np.stack(
                [outputs["map_x"][index], outputs["map_y"][index]], axis=1),
            captions=captions)
        figures.append(plots.reconstruction_grid(
            grid, os.path.join(output_dir, f"grid_{name}.png"), title=name.replace("_", " ")))
        grids[name] = grid
    if "defect_mask" in outputs:
        top = _grid_selections(images, scores, seed)["most_anomalous"]
        figures += plots.defect_overlays(grids["most_anomalous"], [images.ids[i] for i in top],
                                         os.path.join(output_dir, "overlays"))
    if log_dir:
        summaries.write_scoring_summaries(log_dir, scores, images.labels, images.defect_types,
                                          evaluation, grids, map_statistics=map_statistics,
                                          score_name=image_score)
    return Report(output_dir, scores_csv, metrics_json, figures, evaluation, threshold)
