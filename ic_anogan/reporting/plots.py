"""The study's figures, as PNG files. The only module that imports matplotlib.

Training, the search and export never import this module, so serving and
training do not need a display or a plotting backend; Agg is selected here.
Each figure is written to a temporary file and renamed.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from ic_anogan.config import ImageScore, Mode
from ic_anogan.core import atomic_io
from ic_anogan.data.preprocessing import from_model_range  # noqa: E402
from ic_anogan.reporting import metrics  # noqa: E402
from ic_anogan.reporting.overlays import overlay_rgb, png_bytes  # noqa: E402

_COLOURS = {"good": "tab:blue"}
SCORE_LABELS = {"study": "anomaly score A(x)",
                "map_max": "map_max: maximum of the standardised anomaly map",
                "map_topk": "map_topk: mean of the top of the standardised anomaly map"}
_DEFECT_COLOURS = ["tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink",
                   "tab:olive", "tab:cyan", "tab:gray", "tab:green"]


def _save(figure, path: str) -> str:
    with atomic_io.replace_file(path, suffix=".png") as temp:
        figure.savefig(temp, dpi=110, format="png")
    plt.close(figure)
    return path


def score_histogram(scores: np.ndarray, defect_types: Sequence[str], path: str,
                    threshold: Optional[float] = None, title: str = "",
                    x_label: str = SCORE_LABELS[ImageScore.STUDY]) -> str:
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
    axis.set_xlabel(x_label)
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


@dataclasses.dataclass
class GridRows:
    """The images of a figure grid, one row each; map parts are None without statistics.

    Attributes:
      images, reconstructions: [N, S, S, 1] in [-1, 1].
      anomaly_maps: |x − G(z)| [N, S, S, 1].
      standardised_maps: [N, S, S, 1], or None.
      defect_masks: the decision's mask [N, S, S, 1] in {0, 1}, or None.
      true_masks: the ground truth [N, S, S, 1] (all 0 where unknown), or None.
      maxima: (x, y) of each standardised map's maximum [N, 2], or None.
      captions: one per row.
    """

    images: np.ndarray
    reconstructions: np.ndarray
    anomaly_maps: np.ndarray
    captions: Sequence[str]
    standardised_maps: Optional[np.ndarray] = None
    defect_masks: Optional[np.ndarray] = None
    true_masks: Optional[np.ndarray] = None
    maxima: Optional[np.ndarray] = None


def _outline(axis, mask: np.ndarray, colour: str) -> None:
    mask = np.squeeze(mask)
    if mask.any() and not mask.all():
        axis.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=0.9)


def reconstruction_grid(rows: GridRows, path: str, title: str = "") -> str:
    """Rows of query / reconstruction G(z_Γ) / |x − G(z_Γ)| (study Figs. 2, 3).

    With map statistics a fourth panel shows the standardised map, its
    maximum marked (+), the defect mask outlined in cyan and the true
    defect outlined in lime on it and on the query.
    """
    n = len(rows.images)
    if n == 0:
        raise ValueError("reconstruction_grid: no images")
    standardised = rows.standardised_maps is not None
    columns = 4 if standardised else 3
    figure, axes = plt.subplots(n, columns, figsize=(1.8 * columns, 1.85 * n + 0.4),
                                squeeze=False, layout="constrained")
    map_max = float(np.max(rows.anomaly_maps)) or 1.0
    z_max = max(float(np.max(rows.standardised_maps)), 1.0) if standardised else 1.0
    for row in range(n):
        panels = [(rows.images[row], "query", "gray", (-1, 1)),
                  (rows.reconstructions[row], "reconstruction", "gray", (-1, 1)),
                  (rows.anomaly_maps[row], "|difference|", "inferno", (0, map_max))]
        if standardised:
            panels.append((rows.standardised_maps[row], "standardised map", "inferno",
                           (0, z_max)))
        for col, (pixels, name, cmap, (low, high)) in enumerate(panels):
            axis = axes[row, col]
            axis.imshow(np.squeeze(pixels), cmap=cmap, vmin=low, vmax=high)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=9)
        if rows.true_masks is not None:
            for col in (0, columns - 1):
                _outline(axes[row, col], rows.true_masks[row], "lime")
        if standardised and rows.defect_masks is not None:
            _outline(axes[row, 3], rows.defect_masks[row], "cyan")
        if standardised and rows.maxima is not None:
            x, y = rows.maxima[row]
            axes[row, 3].plot([x], [y], marker="+", color="cyan", markersize=9, mew=1.5)
        axes[row, 0].set_ylabel(rows.captions[row], fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def defect_overlays(rows: GridRows, ids: Sequence[str], folder: str, scale: int = 4) -> list:
    """One PNG per row: the query, defect mask in red, true defect outlined in lime.

    Written with Pillow (no figure), `scale` times the model's size, named
    by rank and the image's file name.
    """
    if rows.defect_masks is None:
        return []
    os.makedirs(folder, exist_ok=True)
    paths = []
    for rank, image_id in enumerate(ids):
        rgb = overlay_rgb(from_model_range(np.squeeze(rows.images[rank])),
                          np.squeeze(rows.defect_masks[rank]),
                          None if rows.true_masks is None else np.squeeze(rows.true_masks[rank]))
        stem = os.path.splitext(os.path.basename(str(image_id)))[0].replace(":", "_")
        path = os.path.join(folder, f"{rank:02d}_{stem}.png")
        atomic_io.write_bytes(path, png_bytes(rgb, scale))
        paths.append(path)
    return paths


def auroc_against_time(series: dict, path: str, title: str = "",
                       reference: Optional[float] = None) -> str:
    """AUROC against seconds per image (log scale), one line per scoring mode.

    Args:
      series: mode -> list of (seconds_per_image, auroc, steps), in any order.
      reference: an AUROC drawn as a horizontal line (e.g. the search's at Γ = 500).
    """
    figure, axis = plt.subplots(figsize=(7, 4.2))
    markers = {Mode.SEARCH: "o", Mode.ENCODER: "*", Mode.ENCODER_SEARCH: "s"}
    for i, (mode, points) in enumerate(series.items()):
        points = sorted(points)
        x = [p[0] for p in points]
        y = [p[1] for p in points]
        axis.plot(x, y, marker=markers.get(mode, "o"), markersize=9 if mode == Mode.ENCODER else 6,
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
