"""TensorBoard summaries for scoring: histograms, PR curve, image grids, scalars."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorboard.plugins.pr_curve import summary as pr_curve_summary


def comparison_grid(images, reconstructions, anomaly_maps) -> tf.Tensor:
    """Rows of query | reconstruction | |difference| as one [1, H·N, 3W, 1] image in [0, 1].

    The map is scaled by its maximum over the grid, so rows compare.
    """
    images = (np.asarray(images) + 1.0) / 2.0
    reconstructions = (np.asarray(reconstructions) + 1.0) / 2.0
    maps = np.asarray(anomaly_maps)
    maps = maps / max(float(maps.max()), 1e-6)
    rows = np.concatenate([images, reconstructions, maps], axis=2)  # side by side
    grid = np.concatenate(list(rows), axis=0)[None]
    return tf.constant(np.clip(grid, 0.0, 1.0), tf.float32)


def write_scoring_summaries(log_dir: str, scores: np.ndarray, labels: np.ndarray,
                            defect_types, evaluation: dict, grids: dict, step: int = 0) -> None:
    """Writes a scoring run to TensorBoard under `log_dir/score`.

    Args:
      scores: anomaly scores.
      labels: 0/1, or -1 when unknown (then no PR curve).
      defect_types: per image.
      evaluation: `metrics.evaluate` output; its numbers become scalars.
      grids: name -> (images, reconstructions, anomaly_maps).
    """
    writer = tf.summary.create_file_writer(f"{log_dir}/score")
    types = np.asarray(defect_types)
    with writer.as_default():
        tf.summary.histogram("anomaly_score/all", scores, step=step)
        for name in sorted(set(types.tolist())):
            tf.summary.histogram(f"anomaly_score/{name or 'unlabelled'}", scores[types == name],
                                 step=step)
        for key in ("auroc", "auprc", "tpr_at_fpr_1pct", "tpr_at_fpr_5pct", "pixel_auroc"):
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
        for name, (images, reconstructions, maps) in grids.items():
            tf.summary.image(f"reconstructions/{name}",
                             comparison_grid(images, reconstructions, maps), step=step)
    writer.flush()
    writer.close()
