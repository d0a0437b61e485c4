"""TensorBoard summaries for scoring: histograms, PR curve, image grids, scalars."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import tensorflow as tf
from tensorboard.plugins.pr_curve import summary as pr_curve_summary

from ic_anogan.config import ImageScore
from ic_anogan.data.preprocessing import from_model_range


def comparison_grid(images, reconstructions, anomaly_maps, standardised_maps=None) -> tf.Tensor:
    """Rows of query | reconstruction | |difference| [| standardised map] as one
    [1, H·N, k·W, 1] image in [0, 1].

    Each map is scaled by its maximum over the grid, so rows compare.
    """
    panels = [from_model_range(np.asarray(images)), from_model_range(np.asarray(reconstructions))]
    for maps in (anomaly_maps, standardised_maps):
        if maps is not None:
            maps = np.maximum(np.asarray(maps), 0.0)
            panels.append(maps / max(float(maps.max()), 1e-6))
    rows = np.concatenate(panels, axis=2)  # side by side
    grid = np.concatenate(list(rows), axis=0)[None]
    return tf.constant(np.clip(grid, 0.0, 1.0), tf.float32)


def image_grid(images: tf.Tensor, columns: Optional[int] = None) -> tf.Tensor:
    """[N, H, W, 1] in [-1, 1] -> one [1, rows*H, columns*W, 1] image in [0, 1]."""
    images = from_model_range(tf.convert_to_tensor(images))
    n = int(images.shape[0])
    columns = columns or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / columns))
    pad = rows * columns - n
    if pad:
        images = tf.concat([images, tf.zeros([pad] + images.shape[1:].as_list())], 0)
    h, w = int(images.shape[1]), int(images.shape[2])
    grid = tf.reshape(images, [rows, columns, h, w, 1])
    grid = tf.transpose(grid, [0, 2, 1, 3, 4])
    return tf.clip_by_value(tf.reshape(grid, [1, rows * h, columns * w, 1]), 0.0, 1.0)


def _scaled_image(array: np.ndarray) -> tf.Tensor:
    """[S, S] -> [1, S, S, 1] in [0, 1], scaled by its own range."""
    array = np.asarray(array, np.float32)
    low, high = float(array.min()), float(array.max())
    return tf.constant(((array - low) / max(high - low, 1e-12))[None, ..., None])


def _map_statistics_images(statistics, step: int) -> None:
    """The good parts' per-pixel mean and deviation maps, each scaled to its range."""
    tf.summary.image("map_statistics/mean", _scaled_image(statistics.mean), step=step)
    tf.summary.image("map_statistics/std", _scaled_image(statistics.std), step=step)


def write_map_statistics(log_dir: str, statistics, step: int = 0) -> None:
    """The good parts' statistics as images, with the pixel threshold and image count."""
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        _map_statistics_images(statistics, step)
        tf.summary.scalar("map_statistics/pixel_threshold", statistics.pixel_threshold,
                          step=step)
        tf.summary.scalar("map_statistics/images", statistics.count, step=step)
    writer.flush()
    writer.close()


def write_scoring_summaries(log_dir: str, scores: np.ndarray, labels: np.ndarray,
                            defect_types, evaluation: dict, grids: dict, step: int = 0,
                            map_statistics=None, score_name: str = ImageScore.STUDY.value) -> None:
    """Writes a scoring run to TensorBoard under `log_dir/score`.

    Args:
      scores: the decision's image scores (named `score_name`).
      labels: 0/1, or -1 when unknown (then no PR curve).
      defect_types: per image.
      evaluation: `metrics.evaluate` output; its numbers become scalars.
      grids: name -> plots.GridRows.
      map_statistics: the good parts' statistics, shown as images when given.
    """
    writer = tf.summary.create_file_writer(f"{log_dir}/score")
    types = np.asarray(defect_types)
    with writer.as_default():
        # The study's score keeps its historical tag; a map score is tagged by its name.
        prefix = "anomaly_score" if score_name == ImageScore.STUDY else score_name
        tf.summary.histogram(f"{prefix}/all", scores, step=step)
        for name in sorted(set(types.tolist())):
            tf.summary.histogram(f"{prefix}/{name or 'unlabelled'}", scores[types == name],
                                 step=step)
        for key in ("auroc", "auprc", "tpr_at_fpr_1pct", "tpr_at_fpr_5pct", "pixel_auroc",
                    "pixel_auroc_standardised", "pro"):
            if key in evaluation:
                tf.summary.scalar(f"metrics/{key}", evaluation[key], step=step)
        for key in ("precision", "recall", "f1"):
            if key in evaluation.get("at_threshold", {}):
                tf.summary.scalar(f"metrics/{key}_at_threshold",
                                  evaluation["at_threshold"][key], step=step)
        if np.all(labels >= 0) and 0 < labels.sum() < len(labels):
            # The PR-curve plugin wants probabilities in [0, 1]; a min-max
            # rescaling keeps the order of the scores, which is all a PR curve uses.
            low, high = float(scores.min()), float(scores.max())
            scaled = (scores - low) / max(high - low, 1e-12)
            tf.summary.experimental.write_raw_pb(
                pr_curve_summary.pb("pr_curve", labels.astype(bool), scaled,
                                    num_thresholds=201).SerializeToString(), step=step)
        for name, rows in grids.items():
            tf.summary.image(f"reconstructions/{name}",
                             comparison_grid(rows.images, rows.reconstructions,
                                             rows.anomaly_maps, rows.standardised_maps),
                             step=step)
        if map_statistics is not None:
            _map_statistics_images(map_statistics, step)
    writer.flush()
    writer.close()
