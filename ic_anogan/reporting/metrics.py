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
    """Every image- and pixel-level figure the score command reports.

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
        per_type, tpr_per_type = {}, {}
        for defect_type in sorted(set(defect_types) - {"good"}):
            keep = np.array([t in ("good", defect_type) for t in defect_types])
            if labels[keep].sum() and (1 - labels[keep]).sum():
                per_type[defect_type] = auroc(labels[keep], scores[keep])
                tpr_per_type[defect_type] = tpr_at_fpr(labels[keep], scores[keep], 0.01)
        result["auroc_per_defect_type"] = per_type
        result["tpr_at_fpr_1pct_per_defect_type"] = tpr_per_type
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


def connected_regions(mask: np.ndarray) -> list:
    """The 8-connected regions of a 2-D boolean mask, each as flat pixel indices."""
    mask = np.asarray(mask, bool)
    height, width = mask.shape
    seen = np.zeros_like(mask)
    regions = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        stack, members = [start], []
        while stack:
            y, x = stack.pop()
            members.append(y * width + x)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] \
                            and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        regions.append(np.array(members, np.int64))
    return regions


def pro_auc(maps: np.ndarray, masks: np.ndarray, max_fpr: float = 0.3,
            points: int = 200) -> float:
    """Area under the per-region-overlap curve up to `max_fpr`, normalised to [0, 1].

    As MVTec AD reports it (Bergmann et al. 2021): at each pixel threshold,
    PRO is the mean, over every connected defect region of the ground truth,
    of the share of that region's pixels above the threshold; the curve is
    PRO against the false-positive rate over all defect-free pixels, and its
    area up to `max_fpr` is divided by `max_fpr`. Large and small defects
    weigh the same, unlike in pixel AUROC.

    Args:
      maps: [N, S, S(, 1)] pixel scores (higher = more anomalous).
      masks: same shape, ground truth in {0, 1}.
    """
    maps = np.asarray(maps, np.float64).reshape(len(maps), -1)
    truth = np.asarray(masks).reshape(len(maps), -1) > 0.5
    size = int(round(np.sqrt(truth.shape[1])))
    regions = []
    for i in range(len(maps)):
        if truth[i].any():
            regions += [np.sort(maps[i][r]) for r in connected_regions(truth[i].reshape(size, size))]
    background = np.sort(maps[~truth])
    if not regions or background.size == 0:
        raise ValueError("PRO needs defect regions and defect-free pixels")
    # Thresholds that put the false-positive rate on an even grid in [0, max_fpr].
    fprs = np.linspace(0.0, max_fpr, points + 1)
    ranks = np.clip(np.ceil((1.0 - fprs) * background.size).astype(np.int64) - 1, 0,
                    background.size - 1)
    thresholds = background[ranks]
    thresholds[0] = np.inf
    actual_fpr = 1.0 - np.searchsorted(background, thresholds, side="right") / background.size
    overlap = np.mean([1.0 - np.searchsorted(r, thresholds, side="right") / r.size
                       for r in regions], axis=0)
    # Ties can overshoot max_fpr; integrate only up to it.
    keep = actual_fpr <= max_fpr + 1e-12
    x, y = actual_fpr[keep], overlap[keep]
    if x[-1] < max_fpr:
        x, y = np.append(x, max_fpr), np.append(y, y[-1])
    area = np.trapezoid(y, x) if hasattr(np, "trapezoid") else np.trapz(y, x)
    return float(area / max_fpr)


def pixel_metrics(labels, defect_types: Sequence[str], masks: np.ndarray, has_mask: np.ndarray,
                  anomaly_maps: np.ndarray, standardised_maps: Optional[np.ndarray] = None,
                  defect_masks: Optional[np.ndarray] = None) -> dict:
    """Pixel-level figures over the defect images with masks plus every good image.

    Returns:
      pixel_auroc (of |x − G(z)|, the study's map) overall and per defect type,
      and with the standardised maps pixel_auroc_standardised, pro and both
      per defect type; with the
      defect masks, pixel precision / recall / IoU of the mask decision.
    """
    labels = np.asarray(labels)
    types = np.asarray(defect_types)
    keep = np.asarray(has_mask) | (labels == 0)
    truth = np.asarray(masks) > 0.5
    result: dict = {}

    def area_under(maps, rows):
        pixel_labels = truth[rows].ravel()
        if 0 < pixel_labels.sum() < pixel_labels.size:
            return auroc(pixel_labels.astype(np.int64), np.asarray(maps)[rows].ravel())
        return None

    value = area_under(anomaly_maps, keep)
    if value is None:
        return result
    result["pixel_auroc"] = value
    # Per defect type: its images with masks plus every good image.
    per_type_rows = {}
    for defect_type in sorted(set(types[np.asarray(has_mask)].tolist())):
        rows = keep & ((types == defect_type) | (labels == 0))
        if truth[rows].any():  # masks too small to survive resizing are left out
            per_type_rows[defect_type] = rows
    result["pixel_auroc_per_defect_type"] = {
        t: area_under(anomaly_maps, rows) for t, rows in per_type_rows.items()}
    if standardised_maps is not None:
        standardised_maps = np.asarray(standardised_maps)
        result["pixel_auroc_standardised"] = area_under(standardised_maps, keep)
        result["pro"] = pro_auc(standardised_maps[keep], truth[keep])
        result["pixel_auroc_standardised_per_defect_type"] = {
            t: area_under(standardised_maps, rows) for t, rows in per_type_rows.items()}
        result["pro_per_defect_type"] = {
            t: pro_auc(standardised_maps[rows], truth[rows]) for t, rows in per_type_rows.items()}
    if defect_masks is not None:
        predicted = np.asarray(defect_masks)[keep] > 0
        actual = truth[keep]
        tp = int(np.sum(predicted & actual))
        fp = int(np.sum(predicted & ~actual))
        fn = int(np.sum(~predicted & actual))
        result["defect_mask"] = {
            "pixel_precision": tp / (tp + fp) if tp + fp else 0.0,
            "pixel_recall": tp / (tp + fn) if tp + fn else 0.0,
            "iou": tp / (tp + fp + fn) if tp + fp + fn else 0.0,
            "pixel_false_positive_rate": fp / max(int(np.sum(~actual)), 1)}
    return result
