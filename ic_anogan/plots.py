"""The study's figures, as PNG files. The only module that imports matplotlib.

Training, the search and export never import this module, so serving and
training do not need a display or a plotting backend; Agg is selected here.
Each figure is written to a temporary file and renamed.
"""

from __future__ import annotations

from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from ic_anogan import atomic_io, metrics  # noqa: E402

_COLOURS = {"good": "tab:blue"}
_DEFECT_COLOURS = ["tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink",
                   "tab:olive", "tab:cyan", "tab:gray", "tab:green"]


def _save(figure, path: str) -> str:
    with atomic_io.replace_file(path, suffix=".png") as temp:
        figure.savefig(temp, dpi=110, format="png")
    plt.close(figure)
    return path


def score_histogram(scores: np.ndarray, defect_types: Sequence[str], path: str,
                    threshold: Optional[float] = None, title: str = "") -> str:
    """Histogram of anomaly scores, good against each defect type (study Figs. 4, 5)."""
    scores = np.asarray(scores, np.float64)
    types = np.asarray(defect_types)
    figure, axis = plt.subplots(figsize=(7, 4))
    bins = np.histogram_bin_edges(scores, bins=50)
    names = ["good"] + sorted(set(types.tolist()) - {"good"})
    for i, name in enumerate(names):
        selected = scores[types == name]
        if selected.size == 0:
            continue
        colour = _COLOURS.get(name, _DEFECT_COLOURS[(i - 1) % len(_DEFECT_COLOURS)])
        axis.hist(selected, bins=bins, alpha=0.55, color=colour,
                  label=f"{name or 'unlabelled'} (n={selected.size})")
    if threshold is not None:
        axis.axvline(threshold, color="black", linestyle="--", linewidth=1,
                     label=f"threshold {threshold:.4g}")
    axis.set_xlabel("anomaly score A(x)")
    axis.set_ylabel("images")
    axis.set_title(title or "Anomaly scores")
    axis.legend()
    return _save(figure, path)


def roc_pr_curves(labels: np.ndarray, scores: np.ndarray, path: str) -> str:
    """ROC and precision-recall curves side by side."""
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    precision, recall, _ = metrics.precision_recall_curve(labels, scores)
    figure, (roc_axis, pr_axis) = plt.subplots(1, 2, figsize=(10, 4.2))
    roc_axis.plot(fpr, tpr, color="tab:red")
    roc_axis.plot([0, 1], [0, 1], color="gray", linestyle=":")
    roc_axis.set(xlabel="false positive rate", ylabel="true positive rate",
                 title=f"ROC (AUROC {metrics.auroc(labels, scores):.3f})", xlim=(0, 1),
                 ylim=(0, 1.01))
    pr_axis.plot(np.concatenate([[0], recall]), np.concatenate([[1], precision]),
                 color="tab:blue")
    pr_axis.axhline(np.mean(labels), color="gray", linestyle=":")
    pr_axis.set(xlabel="recall", ylabel="precision",
                title=f"Precision-recall (AUPRC {metrics.average_precision(labels, scores):.3f})",
                xlim=(0, 1), ylim=(0, 1.01))
    return _save(figure, path)


def reconstruction_grid(images: np.ndarray, reconstructions: np.ndarray,
                        anomaly_maps: np.ndarray, captions: Sequence[str], path: str,
                        title: str = "") -> str:
    """Rows of query / reconstruction G(z_Γ) / |x − G(z_Γ)| (study Figs. 2, 3)."""
    n = len(images)
    if n == 0:
        raise ValueError("reconstruction_grid: no images")
    figure, axes = plt.subplots(n, 3, figsize=(5.4, 1.85 * n + 0.4), squeeze=False,
                                layout="constrained")
    map_max = float(np.max(anomaly_maps)) or 1.0
    for row in range(n):
        panels = [(images[row], "query", "gray", (-1, 1)),
                  (reconstructions[row], "reconstruction", "gray", (-1, 1)),
                  (anomaly_maps[row], "|difference|", "inferno", (0, map_max))]
        for col, (pixels, name, cmap, (low, high)) in enumerate(panels):
            axis = axes[row, col]
            axis.imshow(np.squeeze(pixels), cmap=cmap, vmin=low, vmax=high)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=9)
        axes[row, 0].set_ylabel(captions[row], fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def auroc_against_time(series: dict, path: str, title: str = "",
                       reference: Optional[float] = None) -> str:
    """AUROC against seconds per image (log scale), one line per scoring mode.

    Args:
      series: mode -> list of (seconds_per_image, auroc, steps), in any order.
      reference: an AUROC drawn as a horizontal line (e.g. the search's at Γ = 500).
    """
    figure, axis = plt.subplots(figsize=(7, 4.2))
    markers = {"search": "o", "encoder": "*", "encoder_search": "s"}
    for i, (mode, points) in enumerate(series.items()):
        points = sorted(points)
        x = [p[0] for p in points]
        y = [p[1] for p in points]
        axis.plot(x, y, marker=markers.get(mode, "o"), markersize=9 if mode == "encoder" else 6,
                  label=mode, color=_DEFECT_COLOURS[i % len(_DEFECT_COLOURS)] if i else "tab:blue")
        for seconds, auroc, steps in points:
            axis.annotate(f"Γ={steps}", (seconds, auroc), textcoords="offset points",
                          xytext=(4, 4), fontsize=7)
    if reference is not None:
        axis.axhline(reference, color="gray", linestyle=":", linewidth=1,
                     label=f"search Γ=500: {reference:.3f}")
    axis.set_xscale("log")
    axis.set_xlabel("seconds per image (log scale)")
    axis.set_ylabel("AUROC")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    return _save(figure, path)
