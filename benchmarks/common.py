"""What the benchmarks share, on the library's public calls: training, the held-out
images of a model, calibrated scorers, the synthetic splits, per-type figures, timing.

The benchmarks import the installed package (`pip install -e .`); run them as
`.venv/bin/python benchmarks/<name>.py`. Heavy modules load on first use, so
`--help` answers at once.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Optional

# Before any benchmark imports TensorFlow: the package turns oneDNN on where
# TensorFlow leaves it off (ic_anogan/core/runtime.py), as it does for a user.
import ic_anogan  # noqa: F401

# The synthetic defect types, in the order the tables use.
DEFECT_TYPES = ("short_fill", "void", "chipped_edge", "scratch")


def study_test_counts(others: int = 0, good: Optional[int] = None,
                      short_fill: Optional[int] = None) -> dict:
    """The study's test split (1100 good, 755 short fill), plus `others` of each small type."""
    from ic_anogan.config import STUDY_TEST_COUNTS
    counts = dict(STUDY_TEST_COUNTS)
    if good is not None:
        counts["good"] = good
    if short_fill is not None:
        counts["short_fill"] = short_fill
    counts.update({d: others for d in DEFECT_TYPES[1:] if others})
    return counts


def synthetic_split(image_size: int, counts: dict, split: str = "test",
                    package: Optional[str] = None):
    """Synthetic images to score: `split` is test, or validation (images of their own)."""
    from ic_anogan.config import DataConfig
    from ic_anogan.data import loading as data
    return data.load_scoring_set(DataConfig(synthetic_counts=counts, synthetic_split=split,
                                            synthetic_package=package), image_size)


def train(model_dir: str, *, model_config, train_config, data_config=None,
          encoder_epochs: Optional[int] = 20, seed: int = 0):
    """GAN, then (unless encoder_epochs is None) the encoder; calibration is left to the
    benchmark, which calibrates the settings it compares. Returns train_job.TrainJobResult."""
    import os

    from ic_anogan.config import DataConfig, EncoderConfig
    from ic_anogan.jobs import train_job
    return train_job.train_and_calibrate(
        model_dir=model_dir, log_dir=os.path.join(model_dir, "logs"),
        model_config=model_config, train_config=train_config,
        data_config=data_config or DataConfig(),
        encoder_config=EncoderConfig(epochs=encoder_epochs, seed=seed) if encoder_epochs
        else None, calibration_config=None, verbose=0)


def load(model_dir: str):
    from ic_anogan.models.model_dir import load_trained_model
    return load_trained_model(model_dir)


def heldout_images(model):
    """The held-out good images of a trained model, rebuilt from its config.json."""
    from ic_anogan.config import DataConfig
    from ic_anogan.data import loading as data
    stored = model.metadata
    recorded = stored["data"]
    spec = None if recorded["spec"] == "synthetic" else recorded["spec"]
    count = recorded.get("train_images", 0) + recorded.get("heldout_images", 0)
    images = data.load_training_set(
        DataConfig(data_dir=spec, synthetic_train_count=count or 3277,
                   synthetic_package=recorded.get("synthetic_package")),
        model.model_config.image_size, seed=stored["train"]["seed"])
    return data.split_holdout(images, stored["train"]["validation_fraction"],
                              stored["train"]["seed"])[1]


def calibrated_scorer(model, heldout, search_config, map_config="default",
                      batch_size: int = 256):
    """Calibrates `search_config`'s mode on `heldout` (stored in the model directory, as
    score_main.py --calibrate_dir does) and returns (SearchScorer with its map statistics,
    the calibration record)."""
    from ic_anogan.config import MapConfig
    from ic_anogan.scoring import scorer as scoring
    record = scoring.calibrate(model, heldout, search_config, 99.0, batch_size,
                               source="held-out",
                               map_config=MapConfig() if map_config == "default" else map_config)
    return scoring.SearchScorer(model, search_config, record.map_statistics), record


def evaluate(images, outputs, record, image_score: str = "map_max") -> dict:
    """metrics.json's evaluation: every image score, per defect type, and the pixel figures."""
    from ic_anogan.reporting import report
    return report.evaluate_scores(images, outputs, image_score, record.thresholds)


def per_type(evaluation: dict, image_score: str) -> dict:
    """{defect type: (AUROC, TPR at 1% FPR, pixel AUROC of that score's map)}."""
    e = evaluation["image_scores"][image_score]
    pixel = evaluation.get("pixel_auroc_per_defect_type" if image_score == "study"
                           else "pixel_auroc_standardised_per_defect_type", {})
    return {d: (e["auroc_per_defect_type"][d], e["tpr_at_fpr_1pct_per_defect_type"][d],
                pixel.get(d, float("nan"))) for d in e["auroc_per_defect_type"]}


def cell(values: tuple) -> str:
    """AUROC / TPR@1%FPR / pixel AUROC, as the tables print them."""
    return " / ".join(f"{v:.3f}" for v in values)


def median_seconds(run: Callable[[], object], repeats: int = 1,
                   warm_up: Optional[Callable[[], object]] = None) -> tuple:
    """(last result, median seconds of `repeats` timed calls of `run`), after one untimed
    `warm_up` call (default: `run` itself), so that tracing is never timed."""
    (warm_up or run)()
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def map_figures(images, scored, good_scores: dict) -> dict:
    """A map's figures on `images` as the tables print them: per defect type AUROC, TPR at
    1% FPR, PRO and pixel AUROC of the standardised map; overall AUROC and TPR; recall and
    FPR at the map_max threshold the library's rule (99th percentile) sets on
    `good_scores`, the cross-fitted good scores per map score."""
    from ic_anogan.reporting import report
    from ic_anogan.scoring import thresholds as threshold_rules
    thresholds = {s: threshold_rules.estimate(v, 99).threshold for s, v in good_scores.items()}
    e = report.evaluate_scores(images, scored, "map_max", thresholds)
    m = e["image_scores"]["map_max"]
    types = list(m["auroc_per_defect_type"])
    nan = float("nan")
    return {"auroc": {d: m["auroc_per_defect_type"][d] for d in types},
            "tpr": {d: m["tpr_at_fpr_1pct_per_defect_type"][d] for d in types},
            "pro": {d: e.get("pro_per_defect_type", {}).get(d, nan) for d in types},
            "pixel_auroc": {d: e.get("pixel_auroc_standardised_per_defect_type", {}).get(d, nan)
                            for d in types},
            "overall": (m["auroc"], m["tpr_at_fpr_1pct"]),
            "recall": m["at_threshold"]["recall"],
            "fpr": m["at_threshold"]["false_positive_rate"]}


def print_map_table(title: str, rows: list, figures: tuple, overall: bool) -> None:
    """Markdown rows of `map_figures` (with "name" and "seconds"): the per-type `figures`
    in their order, the overall pair when asked, recall (FPR) and the map step's seconds."""
    types = list(rows[0]["auroc"])
    print(f"\n{title}\n")
    print("| map | " + " | ".join(types) + (" | overall" if overall else "")
          + " | recall (FPR) at threshold | map step s |")
    print("|---|" + "---|" * (len(types) + overall) + "---|---:|")
    for r in rows:
        cells = [" / ".join(f"{r[f][d]:.3f}" for f in figures) for d in types]
        if overall:
            cells.append(f"{r['overall'][0]:.3f} / {r['overall'][1]:.3f}")
        print(f"| {r['name']} | " + " | ".join(cells)
              + f" | {r['recall']:.3f} ({r['fpr']:.3f}) | {r['seconds']:.1f} |", flush=True)


def runtime_line() -> str:
    """Whether oneDNN is on, the CPU and its vector extensions: print it beside every time."""
    from ic_anogan.core import runtime
    return runtime.describe()
