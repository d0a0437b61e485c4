"""The report of a scoring run: scores.csv, metrics.json, figures and TensorBoard.

Everything written goes to a temporary name first and is renamed, so an
interrupted run leaves earlier results whole.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
from typing import Optional

import numpy as np

from ic_anogan import config as config_lib
from ic_anogan.config import ImageScore
from ic_anogan.core import atomic_io
from ic_anogan.data.image_set import ImageSet
from ic_anogan.reporting import metrics
from ic_anogan.scoring.map_statistics import MapStatistics
from ic_anogan.scoring.outputs import CSV_COLUMNS, ScoreOutputs

log = logging.getLogger(__name__)

SCORES_FILE = "scores.csv"
METRICS_FILE = "metrics.json"
GRID_ROWS = 8


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


def scores_table(images: ImageSet, outputs: ScoreOutputs, threshold: Optional[float],
                 image_score: str = ImageScore.STUDY.value) -> str:
    """scores.csv text: one row per image, label empty when unknown.

    `is_anomaly` is `image_score` against `threshold`; the map columns are
    empty when the model has no map statistics.
    """
    decision = outputs.score(image_score)
    has_map = outputs.has_maps
    map_values = outputs.map_scores[config_lib.map_score_name(image_score)] if has_map else None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for i, image_id in enumerate(images.ids):
        label = int(images.labels[i])
        map_columns = ([f"{float(map_values[i]):.6f}", int(outputs.map_x[i]),
                        int(outputs.map_y[i])] if has_map else ["", "", ""])
        writer.writerow([
            image_id, "" if label < 0 else label, images.defect_types[i],
            f"{float(outputs.anomaly_score[i]):.6f}", f"{float(outputs.residual_score[i]):.6f}",
            f"{float(outputs.discrimination_score[i]):.6f}",
            # Not "<=" so that a NaN score is anomalous: never judged good unscored.
            "" if threshold is None else int(not decision[i] <= threshold), *map_columns])
    return buffer.getvalue()


def _grid_selections(images: ImageSet, scores: np.ndarray, seed: int) -> dict:
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


def evaluate_scores(images: ImageSet, outputs: ScoreOutputs, image_score: str,
                    thresholds: dict) -> dict:
    """metrics.json's content: the decision's figures, every image score's, pixel figures.

    Args:
      thresholds: image score -> threshold (None or missing: no decision).
    """
    per_score = {}
    for name in outputs.available_scores():
        per_score[name] = metrics.evaluate(images.labels, ranked(outputs.score(name)),
                                           images.defect_types, thresholds.get(name))
    evaluation = {**per_score[image_score], "image_score": image_score,
                  "image_scores": per_score}
    if images.masks is not None and np.any(images.has_mask):
        evaluation.update(metrics.pixel_metrics(
            images.labels, images.defect_types, images.masks, images.has_mask,
            outputs.anomaly_map, outputs.standardised_map, outputs.defect_mask))
    return evaluation


def write_report(output_dir: str, images: ImageSet, outputs: ScoreOutputs,
                 threshold: Optional[float], log_dir: Optional[str] = None,
                 seed: int = 0, extra: Optional[dict] = None, image_score: str = ImageScore.STUDY.value,
                 thresholds: Optional[dict] = None,
                 map_statistics: Optional[MapStatistics] = None) -> Report:
    """Writes scores.csv, metrics.json (when labelled), figures and TensorBoard summaries.

    Args:
      output_dir: created if missing; files in it are replaced atomically.
      images: the scored set.
      outputs: a scorer's outputs (with the map outputs when the model has map
        statistics).
      threshold: the decision threshold of `image_score`, or None when uncalibrated.
      log_dir: TensorBoard directory, or None for none.
      seed: picks the sample of good images shown.
      extra: more fields for metrics.json (settings, timings).
      image_score: the score the decision (is_anomaly, histogram, grids) uses.
      thresholds: every image score's threshold, for the side-by-side figures.
      map_statistics: shown in TensorBoard beside the maps.
    """
    from ic_anogan.reporting import plots
    from ic_anogan.scoring import summaries  # plotting stays out of the search path

    thresholds = dict(thresholds or {})
    thresholds[image_score] = threshold
    raw_scores = outputs.score(image_score)
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
    standardised = outputs.standardised_map
    for name, index in _grid_selections(images, scores, seed).items():
        captions = [f"{images.defect_types[i] or os.path.basename(images.ids[i])}\n"
                    f"{image_score}={scores[i]:.2f}" for i in index]
        grid = plots.GridRows(
            images=images.images[index], reconstructions=outputs.reconstruction[index],
            anomaly_maps=outputs.anomaly_map[index],
            standardised_maps=None if standardised is None else standardised[index],
            defect_masks=None if outputs.defect_mask is None else outputs.defect_mask[index],
            true_masks=None if images.masks is None else np.where(
                images.has_mask[index, None, None, None], images.masks[index], 0.0),
            maxima=None if outputs.map_x is None else np.stack(
                [outputs.map_x[index], outputs.map_y[index]], axis=1),
            captions=captions)
        figures.append(plots.reconstruction_grid(
            grid, os.path.join(output_dir, f"grid_{name}.png"), title=name.replace("_", " ")))
        grids[name] = grid
    if outputs.defect_mask is not None:
        top = _grid_selections(images, scores, seed)["most_anomalous"]
        figures += plots.defect_overlays(grids["most_anomalous"], [images.ids[i] for i in top],
                                         os.path.join(output_dir, "overlays"))
    if log_dir:
        summaries.write_scoring_summaries(log_dir, scores, images.labels, images.defect_types,
                                          evaluation, grids, map_statistics=map_statistics,
                                          score_name=image_score)
    return Report(output_dir, scores_csv, metrics_json, figures, evaluation, threshold)


def summary_text(report: Report) -> str:
    """What the score command prints after a mode: each score's figures, the pixel
    figures, the decision at the threshold, and where the files are."""
    lines = []
    evaluation = report.evaluation
    for name, e in evaluation.get("image_scores", {}).items():
        if "auroc" in e:
            per_type = ", ".join(f"{t} {v:.4f}" for t, v in e["auroc_per_defect_type"].items())
            lines.append(f"{name:9s} AUROC {e['auroc']:.4f}  AUPRC {e['auprc']:.4f}  "
                         f"TPR@1%FPR {e['tpr_at_fpr_1pct']:.4f}  per type: {per_type}"
                         + ("  (decides)" if name == evaluation["image_score"] else ""))
    pixel = [f"{label} {evaluation[key]:.4f}" for key, label in (
        ("pixel_auroc", "pixel AUROC |x-G(z)|"), ("pixel_auroc_standardised",
                                                  "pixel AUROC standardised"), ("pro", "PRO"))
        if key in evaluation]
    if pixel:
        lines.append("  ".join(pixel))
    if "at_threshold" in evaluation:
        t = evaluation["at_threshold"]
        lines.append(f"at threshold {t['threshold']:.4f}: precision {t['precision']:.4f} "
                     f"recall {t['recall']:.4f} F1 {t['f1']:.4f} "
                     f"FPR {t['false_positive_rate']:.4f}")
    lines.append(f"scores: {report.scores_csv}")
    overlays = [f for f in report.figures if os.path.basename(os.path.dirname(f)) == "overlays"]
    lines.append(f"figures: {', '.join(f for f in report.figures if f not in overlays)}")
    if overlays:
        lines.append(f"defect-mask overlays: {os.path.dirname(overlays[0])}/ "
                     f"({len(overlays)} images)")
    return "\n".join(lines)


def comparison_table(rows: list) -> str:
    """A markdown table comparing modes; rows hold mode, steps, evaluation, seconds, images."""
    lines = ["| mode | Γ | image score | AUROC | AUPRC | TPR@1%FPR | pixel AUROC | PRO | "
             "s / image | images / s |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        top = r["evaluation"]
        for name, e in top.get("image_scores", {"-": top}).items():
            metric = (lambda k, d=e: f"{d[k]:.4f}" if k in d else "-")
            map_score = name != ImageScore.STUDY  # a map score is judged on the standardised map
            pixel = metric("pixel_auroc_standardised" if map_score else "pixel_auroc", top)
            decides = " (decides)" if name == top.get("image_score") else ""
            lines.append(f"| {r['mode']} | {r['steps']} | {name}{decides} | {metric('auroc')} | "
                         f"{metric('auprc')} | {metric('tpr_at_fpr_1pct')} | {pixel} | "
                         f"{metric('pro', top) if map_score else '-'} | "
                         f"{r['seconds'] / r['images']:.4f} | "
                         f"{r['images'] / max(r['seconds'], 1e-9):.1f} |")
    return "\n".join(lines)
