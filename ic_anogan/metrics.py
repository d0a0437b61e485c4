"""Detection metrics in numpy: ROC, AUROC, PR, AUPRC, threshold metrics.

Convention: a higher score means more anomalous; label 1 = anomalous; an
image is called anomalous when its score is strictly above the threshold.
Tied scores are handled as one step of the curve, so AUROC of a constant
score is 0.5 (not an artefact of ordering).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(np.int64).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in length")
    if not np.all(np.isin(labels, (0, 1))):
        raise ValueError("labels must be 0 (good) or 1 (anomalous)")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    return labels, scores


def _curve_counts(labels, scores):
    """True and false positive counts at each distinct threshold, high to low."""
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    distinct = np.flatnonzero(np.diff(scores)) if len(scores) > 1 else np.array([], int)
    ends = np.concatenate([distinct, [len(scores) - 1]])
    tps = np.cumsum(labels)[ends]
    fps = (ends + 1) - tps
    return tps, fps, scores[ends]


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), starting at (0, 0).

    Raises:
      ValueError: both classes must be present.
    """
    labels, scores = _check(labels, scores)
    positives, negatives = labels.sum(), (1 - labels).sum()
    if positives == 0 or negatives == 0:
        raise ValueError("ROC needs both good (0) and anomalous (1) examples")
    tps, fps, thresholds = _curve_counts(labels, scores)
    tpr = np.concatenate([[0.0], tps / positives])
    fpr = np.concatenate([[0.0], fps / negatives])
    return fpr, tpr, np.concatenate([[np.inf], thresholds])


def auroc(labels, scores) -> float:
    """Area under the ROC curve (trapezoids; ties count half)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr) if hasattr(np, "trapezoid") else np.trapz(tpr, fpr))


def precision_recall_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) with thresholds decreasing."""
    labels, scores = _check(labels, scores)
    positives = labels.sum()
    if positives == 0:
        raise ValueError("a PR curve needs anomalous (1) examples")
    tps, fps, thresholds = _curve_counts(labels, scores)
    precision = tps / (tps + fps)
    recall = tps / positives
    return precision, recall, thresholds


def average_precision(labels, scores) -> float:
    """AUPRC as average precision: Σ (R_k − R_{k−1}) · P_k."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def tpr_at_fpr(labels, scores, max_fpr: float) -> float:
    """The highest TPR whose FPR does not exceed `max_fpr`."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def threshold_metrics(labels, scores, threshold: float) -> dict:
    """Precision, recall, F1, FPR and confusion counts at `score > threshold`."""
    labels, scores = _check(labels, scores)
    predicted = scores > threshold
    tp = int(np.sum(predicted & (labels == 1)))
    fp = int(np.sum(predicted & (labels == 0)))
    fn = int(np.sum(~predicted & (labels == 1)))
    tn = int(np.sum(~predicted & (labels == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(threshold), "precision": precision, "recall": recall,
            "f1": f1, "false_positive_rate": fp / (fp + tn) if fp + tn else 0.0,
            "true_positives": tp, "false_positives": fp, "false_negatives": fn,
            "true_negatives": tn}


def evaluate(labels, scores, defect_types: Sequence[str], threshold: Optional[float],
             anomaly_maps: Optional[np.ndarray] = None, masks: Optional[np.ndarray] = None,
             has_mask: Optional[np.ndarray] = None) -> dict:
    """Every image- and pixel-level figure `score_main.py` reports.

    Pixel AUROC uses the defect images that have masks plus every good image
    (all of whose pixels are good), as MVTec-AD does.
    """
    labels, scores = _check(labels, scores)
    result: dict = {"count": int(len(labels)), "counts": {}}
    for defect_type in sorted(set(defect_types)):
        result["counts"][defect_type] = int(sum(t == defect_type for t in defect_types))
    both = 0 < labels.sum() < len(labels)
    if both:
        result.update(auroc=auroc(labels, scores), auprc=average_precision(labels, scores),
                      tpr_at_fpr_1pct=tpr_at_fpr(labels, scores, 0.01),
                      tpr_at_fpr_5pct=tpr_at_fpr(labels, scores, 0.05))
        per_type = {}
        for defect_type in sorted(set(defect_types) - {"good"}):
            keep = np.array([t in ("good", defect_type) for t in defect_types])
            if labels[keep].sum() and (1 - labels[keep]).sum():
                per_type[defect_type] = auroc(labels[keep], scores[keep])
        result["auroc_per_defect_type"] = per_type
    if threshold is not None:
        result["at_threshold"] = threshold_metrics(labels, scores, threshold)
    if anomaly_maps is not None and masks is not None and has_mask is not None \
            and np.any(has_mask):
        keep = np.asarray(has_mask) | (labels == 0)
        pixel_labels = (np.asarray(masks)[keep] > 0.5).ravel()
        if 0 < pixel_labels.sum() < pixel_labels.size:
            result["pixel_auroc"] = auroc(pixel_labels.astype(np.int64),
                                          np.asarray(anomaly_maps)[keep].ravel())
    return result
