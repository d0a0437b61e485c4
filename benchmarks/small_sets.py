"""Decisions from few good images: threshold rules and map settings, from 100 to 3277 images.

    # train the models (once; a model that exists is reused), then evaluate them
    .venv/bin/python benchmarks/small_sets.py --work_dir /tmp/small_sets train
    .venv/bin/python benchmarks/small_sets.py --work_dir /tmp/small_sets evaluate
    # the ELPV poly cells of benchmarks/elpv.py (its model and test folders)
    .venv/bin/python benchmarks/small_sets.py --work_dir /tmp/small_sets evaluate \
        --elpv_dir /tmp/ic_anogan_elpv

Protocol, fixed before looking at any result:

  * Models: the built-in synthetic packages (`sop`, `mixed`), 32 and 64 px,
    trained on 100, 200, 400, 1000 and 3277 good images (10% held out, as
    training does) at the demo's budget: 16 base filters, 1380 generator
    updates (the demo's 30 epochs of 3277 images), encoder 20 epochs. One
    model per (package, size, count), trained once and reused.
  * Every image is searched once, in the default mode (encoder_search,
    Γ = 50); every rule and map setting below reuses those latents and
    reconstructions, so rows differ only in how they decide.
  * Held-out draws: the calibration set of a real user is the 10% held out
    of their images. Here each of --draws draws is that many good images
    (as many as the model held out) taken without replacement from a pool of
    unseen good images (the synthetic validation split: never trained on,
    never tested on). Only calibration is repeated, never training.
  * Realised FPR: the share of --test_good unseen good test images above the
    calibrated map_max threshold; recall the share of each defect type's
    test images above it, next to the oracle TPR at 1% FPR on the same
    scores (what a threshold set on the test images themselves would give).
  * Map settings: `today` (tolerance 1 px, 30 neighbours, the defaults
    before this rule), `fixed 0/0` (tolerance 0, no neighbours) and `rule`
    (MapConfig's resolved defaults: resolve_map_config), AUROC per defect
    type on the test split, calibrated on the first draw.

  * ELPV poly (--elpv_dir): draw 0 is the model's own 62 held-out cells; the
    other draws take as many, without replacement, from those and the first half
    of the test split's good cells; the FPR is measured on the other half.

Choosing is done on the validation pool; the test split is reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Optional

import common
import numpy as np

COUNTS = (100, 200, 400, 1000, 3277)
SIZES = (32, 64)
PACKAGES = ("sop", "mixed")
UPDATES = 1380
# Unseen good validation images beside the draws: the FPR that chooses a rule.
VALIDATION_GOOD = 1000
# Training images scored for the in-sample candidate.
TRAINING_IMAGES_SCORED = 1000


def rows_of(outputs, rows):
    """ScoreOutputs of the given rows only."""
    values = {}
    for field in dataclasses.fields(outputs):
        value = getattr(outputs, field.name)
        if isinstance(value, np.ndarray):
            value = value[rows]
        elif isinstance(value, dict):
            value = {k: v[rows] for k, v in value.items()}
        values[field.name] = value
    return dataclasses.replace(outputs, **values)


def training_images(model, limit: int):
    """Up to `limit` of the images the model trained on, rebuilt from its config.json."""
    from ic_anogan.config import DataConfig
    from ic_anogan.data import loading
    from ic_anogan.data.image_set import ImageSet
    recorded = model.metadata["data"]
    spec = None if recorded["spec"] == "synthetic" else recorded["spec"]
    count = recorded.get("train_images", 0) + recorded.get("heldout_images", 0)
    images = loading.load_training_set(
        DataConfig(data_dir=spec, synthetic_train_count=count or 3277,
                   synthetic_package=recorded.get("synthetic_package")),
        model.model_config.image_size, seed=model.metadata["train"]["seed"])
    train = loading.split_holdout(images, model.metadata["train"]["validation_fraction"],
                                  model.metadata["train"]["seed"])[0]
    rows = np.arange(min(limit, len(train)))
    return ImageSet(train.images[rows], [train.ids[i] for i in rows], train.labels[rows],
                    [train.defect_types[i] for i in rows])


def model_dir_of(work_dir: str, package: str, size: int, count: int,
                 heldout_share: float = 0.1) -> str:
    suffix = "" if heldout_share == 0.1 else f"_heldout{heldout_share:g}"
    return os.path.join(work_dir, f"{package}_{size}px_{count}{suffix}")


def train_models(work_dir: str, grid: list) -> None:
    """Trains every (package, size, count) of `grid` that has no model yet."""
    from ic_anogan.config import DataConfig, ModelConfig, TrainConfig
    from ic_anogan.models.model_dir import ENCODER_FILE
    for package, size, count, *share in grid:
        model_dir = model_dir_of(work_dir, package, size, count, *share)
        if os.path.exists(os.path.join(model_dir, ENCODER_FILE)):
            print(f"{model_dir}: trained already", flush=True)
            continue
        start = time.perf_counter()
        common.train(model_dir, model_config=ModelConfig(size, 100, 16),
                     train_config=TrainConfig(updates=UPDATES,
                                              validation_fraction=share[0] if share else 0.1),
                     data_config=DataConfig(synthetic_train_count=count,
                                            synthetic_package=package))
        print(f"{model_dir}: trained in {time.perf_counter() - start:.0f} s", flush=True)


# -- threshold rules -------------------------------------------------------------

def rule_percentile(scores, percentile):
    import numpy as np
    return float(np.percentile(scores, percentile))


def rule_library(scores, percentile):
    """The library's rule (thresholds.estimate, outliers excluded)."""
    from ic_anogan.scoring import thresholds
    first = thresholds.estimate(scores, percentile)
    return thresholds.estimate(scores, percentile, excluded=first.outliers).threshold


def rule_gumbel_only(scores, percentile):
    """The Gumbel fit at every size (no switch to the sample percentile)."""
    from ic_anogan.scoring import thresholds
    fit = thresholds.fit_gumbel(scores)
    return fit.quantile(percentile / 100) if fit else rule_percentile(scores, percentile)


def rule_gumbel_upper(scores, percentile):
    """The Gumbel fit through the 10% to 95% order statistics (more of the tail)."""
    from ic_anogan.scoring import thresholds
    fit = thresholds.fit_gumbel(scores, 0.1, 0.95)
    return fit.quantile(percentile / 100) if fit else rule_percentile(scores, percentile)


def rule_lognormal(scores, percentile):
    """A normal fit of log scores through their central order statistics (10% to 90%)."""
    import numpy as np
    from scipy import stats
    values = np.sort(np.asarray(scores, np.float64))
    if values.min() <= 0:
        return float("nan")
    n = len(values)
    positions = (np.arange(1, n + 1) - 0.375) / (n + 0.25)
    inside = (positions >= 0.1) & (positions <= 0.9)
    slope, intercept = np.polyfit(stats.norm.ppf(positions[inside]), np.log(values[inside]), 1)
    return float(np.exp(intercept + slope * stats.norm.ppf(percentile / 100)))


def rule_harrell_davis(scores, percentile):
    """Harrell-Davis smoothed quantile: a Beta-weighted mean of every order statistic."""
    import numpy as np
    from scipy import stats
    values = np.sort(np.asarray(scores, np.float64))
    n = len(values)
    p = percentile / 100
    cdf = stats.beta.cdf(np.arange(n + 1) / n, p * (n + 1), (1 - p) * (n + 1))
    return float(np.dot(np.diff(cdf), values))


def rule_bootstrap(scores, percentile):
    """Mean of 500 bootstrap resamples' sample percentiles (seeded)."""
    import numpy as np
    values = np.asarray(scores, np.float64)
    rng = np.random.default_rng(0)
    draws = rng.choice(values, size=(500, len(values)), replace=True)
    return float(np.percentile(draws, percentile, axis=1).mean())


RULES = {"percentile (before)": rule_percentile, "library: fitted Gumbel": rule_library,
         "Gumbel fit at every size": rule_gumbel_only,
         "Gumbel fit through 10-95%": rule_gumbel_upper, "log-normal fit": rule_lognormal,
         "Harrell-Davis": rule_harrell_davis, "bootstrap": rule_bootstrap}


# -- figures -------------------------------------------------------------------

def auroc(good, defect) -> float:
    """Mann-Whitney AUROC, ties counted half."""
    import numpy as np
    good, defect = np.asarray(good), np.asarray(defect)
    order = np.argsort(np.concatenate([good, defect]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([good, defect])[order]
    _, first, counts = np.unique(values, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(average, counts)
    return float((ranks[len(good):].sum() - len(defect) * (len(defect) + 1) / 2)
                 / (len(good) * len(defect)))


def tpr_at_fpr(good, defect, fpr: float = 0.01) -> float:
    """Share of defects above the lowest threshold that passes at most `fpr` of the good."""
    import numpy as np
    ordered = np.sort(good)
    allowed = int(np.floor(fpr * len(ordered)))
    threshold = ordered[len(ordered) - 1 - allowed]
    return float(np.mean(np.asarray(defect) > threshold))


def map_settings(image_size: int, calibration_images: int) -> dict:
    """The map settings compared: the defaults before, the study's map, the rule."""
    from ic_anogan.config import MapConfig
    base = MapConfig()
    return {"today (1 px, 30 neighbours)": dataclasses.replace(
                base, alignment_tolerance=1, neighbours=30),
            "fixed (0 px, no neighbours)": dataclasses.replace(
                base, alignment_tolerance=0, neighbours=0),
            "1 px, no neighbours": dataclasses.replace(base, alignment_tolerance=1,
                                                       neighbours=0),
            "0 px, 30 neighbours": dataclasses.replace(base, alignment_tolerance=0,
                                                       neighbours=30),
            "rule": base.resolve(image_size, calibration_images)[0]}


def evaluate_model(model_dir: str, draws: int, test_good: int, defects: int,
                   elpv_test: str = "", parts: tuple = ("rules", "maps"),
                   folds: Optional[int] = None) -> dict:
    """Every figure of one model: threshold rules over draws, map settings."""
    import numpy as np

    from ic_anogan.config import DataConfig, SearchConfig, search_config_for_mode
    from ic_anogan.data import loading
    from ic_anogan.data.image_set import ImageSet
    from ic_anogan.scoring import map_calibration, scorer as scoring
    from ic_anogan.scoring.outputs import ScoreOutputs

    model = common.load(model_dir)
    size = model.model_config.image_size
    heldout = common.heldout_images(model)
    h = len(heldout)
    package = model.metadata.get("data", {}).get("synthetic_package")
    search = search_config_for_mode("encoder_search", SearchConfig())
    scorer = scoring.SearchScorer(model, search)
    if not elpv_test:
        # The draws, then VALIDATION_GOOD more for the validation FPR (never in a draw).
        pool = common.synthetic_split(size, {"good": draws * h + VALIDATION_GOOD, **{
            d: defects for d in common.DEFECT_TYPES}}, "validation", package)
        test = common.synthetic_split(size, {"good": test_good, **{
            d: defects for d in common.DEFECT_TYPES}}, "test", package)
    start = time.perf_counter()
    heldout_out = scorer.score(heldout, 256)
    if elpv_test:
        # Real cells: besides the held-out images, the only unseen good cells are the test
        # split's. Its first half of good cells joins the held-out ones as the pool of
        # draws; the FPR is measured on the other half. Draw 0 is the model's own held-out
        # set; the others draw as many from the pool, without replacement (a duplicate
        # would sit in two cross-fitting folds and bias the scores low).
        everything = loading.load_scoring_set(DataConfig(data_dir=elpv_test), size)
        everything_out = scorer.score(everything, 256)
        good_rows = np.flatnonzero(everything.labels == 0)
        to_pool = good_rows[:len(good_rows) // 2]
        kept = np.setdiff1d(np.arange(len(everything)), to_pool)
        pool = ImageSet(np.concatenate([heldout.images, everything.images[to_pool]]),
                        list(heldout.ids) + [everything.ids[i] for i in to_pool],
                        np.zeros(h + len(to_pool), np.int64),
                        ["good"] * (h + len(to_pool)))
        pool_out = ScoreOutputs.concatenate([heldout_out, rows_of(everything_out, to_pool)])
        test = ImageSet(everything.images[kept], [everything.ids[i] for i in kept],
                        everything.labels[kept], [everything.defect_types[i] for i in kept])
        test_out = rows_of(everything_out, kept)
    else:
        pool_out = scorer.score(pool, 256)
        test_out = scorer.score(test, 256)
    seconds = time.perf_counter() - start
    # Cross-fitting over the training images would score them in-sample for G and E:
    # their scores, standardised like a draw's, give that candidate's threshold.
    train_set = training_images(model, TRAINING_IMAGES_SCORED)
    train_out = scorer.score(train_set, 256)
    pool_good = np.flatnonzero(pool.labels == 0)
    validation_good = pool_good[draws * h:] if not elpv_test else pool_good[:0]
    rng = np.random.default_rng(0)

    def subset(images: ImageSet, outputs, rows):
        return images.images[rows], outputs.reconstruction[rows], outputs.latent[rows]

    def draw_rows(d: int):
        if elpv_test:
            return pool_good[:h] if d == 0 else np.sort(rng.choice(pool_good, size=h,
                                                                   replace=False))
        return pool_good[d * h:(d + 1) * h] if (d + 1) * h <= len(pool_good) else \
            rng.choice(pool_good, size=h, replace=False)

    test_types = [t for t in dict.fromkeys(test.defect_types) if t != "good"]
    test_good_rows = np.array([t == "good" for t in test.defect_types])
    result = {"model_dir": model_dir, "image_size": size, "heldout": h,
              "search_seconds": seconds, "rules": {}, "maps": {}}
    rule_config = map_settings(size, h)["rule"]
    if folds is not None:  # 0: leave one out
        rule_config = dataclasses.replace(rule_config, folds=folds or h)
    per_draw = []
    for d in range(draws if "rules" in parts else 0):
        rows = draw_rows(d)
        images, recon, latents = subset(pool, pool_out, rows)
        calibrated = map_calibration.calibrate(images, recon, rule_config, seed=0,
                                               latents=latents)
        scored = scoring.with_maps(test.images, test_out, calibrated.statistics)
        test_scores = scored.map_scores["map_max"]
        good_scores = calibrated.good_scores["map_max"]
        in_sample = scoring.with_maps(train_set.images, train_out,
                                      calibrated.statistics).map_scores["map_max"]
        validation_scores = scoring.with_maps(
            pool.images[validation_good], rows_of(pool_out, validation_good),
            calibrated.statistics).map_scores["map_max"] if len(validation_good) else None
        per_draw.append({})
        rules = dict(RULES)
        rules["in-sample: training images"] = lambda _, p: rule_percentile(in_sample, p)
        for name, rule in rules.items():
            threshold = rule(good_scores, 99.0)
            per_draw[-1][name] = {
                "threshold": threshold,
                "validation_fpr": None if validation_scores is None else float(
                    np.mean(validation_scores > threshold)),
                "fpr": float(np.mean(test_scores[test_good_rows] > threshold)),
                "recall": {t: float(np.mean(test_scores[np.array(test.defect_types) == t]
                                            > threshold)) for t in test_types}}
        per_draw[-1]["oracle"] = {t: tpr_at_fpr(
            test_scores[test_good_rows], test_scores[np.array(test.defect_types) == t])
            for t in test_types}
        per_draw[-1]["auroc"] = {t: auroc(
            test_scores[test_good_rows], test_scores[np.array(test.defect_types) == t])
            for t in test_types}
    result["draws"] = per_draw
    # In-sample: the training images' own scores (what cross-fitting over them would see).
    # Map settings, calibrated on the model's own held-out images.
    splits = {"test": (test, test_out)}
    if not elpv_test:
        splits["validation"] = (pool, pool_out)
    for name, config in (map_settings(size, h) if "maps" in parts else {}).items():
        calibrated = map_calibration.calibrate(heldout.images, heldout_out.reconstruction,
                                               config, seed=0, latents=heldout_out.latent)
        result["maps"][name] = {"config": dataclasses.asdict(config)}
        for split, (images, outputs) in splits.items():
            scored = scoring.with_maps(images.images, outputs, calibrated.statistics)
            values = scored.map_scores["map_max"]
            types = np.array(images.defect_types)
            good = values[types == "good"]
            if split == "validation":
                good = good[h * draws:] if len(good) > h * draws else good
            result["maps"][name][split] = {
                t: (auroc(good, values[types == t]), tpr_at_fpr(good, values[types == t]))
                for t in test_types}
    return result


def print_rules(results: list) -> None:
    """Per model and rule: realised FPR over the draws, recall / oracle TPR."""
    print("\nThreshold rules: map_max at the 99th percentile, realised FPR on unseen good test "
          "images over the held-out draws (min-max), and mean recall / oracle TPR at 1% FPR "
          "per defect type\n")
    for r in results:
        types = list(r["draws"][0]["oracle"])
        print(f"\n{r['model_dir']} ({r['heldout']} held-out images, {len(r['draws'])} draws)\n")
        print("| rule | validation FPR min-max (mean) | test FPR min-max (mean) | "
              + " | ".join(f"{t} recall / oracle" for t in types) + " |")
        print("|---|---|---|" + "---|" * len(types))
        for name in r["draws"][0]:
            if name in ("oracle", "auroc"):
                continue
            fprs = [d[name]["fpr"] for d in r["draws"]]
            validation = [d[name]["validation_fpr"] for d in r["draws"]
                          if d[name]["validation_fpr"] is not None]
            cells = [f"{np.mean([d[name]['recall'][t] for d in r['draws']]):.3f} / "
                     f"{np.mean([d['oracle'][t] for d in r['draws']]):.3f}" for t in types]
            chosen_on = (f"{100 * min(validation):.1f}%-{100 * max(validation):.1f}% "
                         f"({100 * np.mean(validation):.1f}%)" if validation else "-")
            print(f"| {name} | {chosen_on} | {100 * min(fprs):.1f}%-{100 * max(fprs):.1f}% "
                  f"({100 * np.mean(fprs):.1f}%) | " + " | ".join(cells) + " |")


def print_maps(results: list) -> None:
    print("\nMap settings: AUROC / TPR at 1% FPR of map_max per defect type, calibrated on "
          "the model's held-out images\n")
    for r in results:
        for split in ("validation", "test"):
            rows = {n: m[split] for n, m in r["maps"].items() if split in m}
            if not rows:
                continue
            types = list(next(iter(rows.values())))
            print(f"\n{r['model_dir']}, {split} split\n")
            print("| map | " + " | ".join(types) + " |")
            print("|---|" + "---|" * len(types))
            for name, values in rows.items():
                print(f"| {name} | " + " | ".join(f"{values[t][0]:.3f} / {values[t][1]:.3f}"
                                                 for t in types) + " |")


def parse_grid(values: list) -> list:
    """'sop:32:400' items -> [(package, size, count)]; empty: the whole grid.
    A fourth field sets the held-out share: 'sop:32:200:0.25'."""
    if not values:
        return [(p, s, c) for p in PACKAGES for s in SIZES for c in COUNTS]
    grid = []
    for value in values:
        package, size, count, *share = value.split(":")
        grid.append((package, int(size), int(count)) + tuple(float(v) for v in share))
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=["train", "evaluate"])
    parser.add_argument("--work_dir", default="/tmp/ic_anogan_small_sets")
    parser.add_argument("--grid", nargs="*", default=None,
                        help="package:size:count items (default: every combination)")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--test_good", type=int, default=1000)
    parser.add_argument("--defects", type=int, default=100, help="test images per defect type")
    parser.add_argument("--elpv_dir", default="",
                        help="benchmarks/elpv.py's work dir: evaluate its model instead")
    parser.add_argument("--results", default=None, help="append each model's figures here")
    parser.add_argument("--folds", type=int, default=None,
                        help="cross-fitting folds of the draws' calibration (0: leave one out)")
    parser.add_argument("--parts", nargs="+", default=["rules", "maps"],
                        choices=["rules", "maps"], help="what to evaluate")
    args = parser.parse_args()
    grid = parse_grid(args.grid)
    print(common.runtime_line(), flush=True)
    if args.phase == "train":
        train_models(args.work_dir, grid)
        return
    if args.elpv_dir:
        models = [(os.path.join(args.elpv_dir, "model"),
                   os.path.join(args.elpv_dir, "data", "test"))]
    else:
        models = [(model_dir_of(args.work_dir, *item), "") for item in grid
                  if os.path.exists(model_dir_of(args.work_dir, *item))]
    results = []
    for model_dir, elpv_test in models:
        result = evaluate_model(model_dir, args.draws, args.test_good, args.defects, elpv_test,
                                tuple(args.parts), args.folds)
        results.append(result)
        print(f"{model_dir}: searched in {result['search_seconds']:.0f} s", flush=True)
        if args.results:
            with open(args.results, "a") as f:
                f.write(json.dumps(result) + "\n")
    if "rules" in args.parts:
        print_rules(results)
    if "maps" in args.parts:
        print_maps(results)


if __name__ == "__main__":
    main()
