"""Maps for real, textured surfaces, side by side per defect type, from one search per split.

    # a synthetic model (IC packages or --synthetic_package=texture): its validation
    # split chooses, its test split reports
    python benchmarks/real_surfaces.py --model_dir models/texture
    # a real set written by benchmarks/elpv.py: validation/good/ with synthetic
    # defects pasted in (synthetic_defects.py) chooses, test/ reports
    python benchmarks/real_surfaces.py --model_dir /tmp/elpv/model --data_dir /tmp/elpv/data

The search runs once per split in the chosen mode (default encoder_search,
Γ = 50); its x, G(z), z and D's block features are kept in --cache. Every
row then calibrates its map on the model's held-out good images, exactly as
training does (cross-fitted statistics and thresholds by the library's rule
at the 99th percentile), and scores the same reconstructions. Rows:

  today                  the library's map before this round: |x − G(z)|
  gradient, ssim         structural comparisons (scoring/comparisons.py)
  features               |f_l(x) − f_l(G(z))| of D's blocks at S/4 and S/8,
                         channel-averaged, upsampled, standardised like the rest
  ... area 3             the same map at 4 scales (scoring/area_scales.py)
  max(a, b)              two area maps combined: each is already in units of
                         how good images' maxima vary, so the combination is
                         their maximum (image score: the larger map_max)

Prints AUROC / TPR at 1% FPR / pixel AUROC / PRO per defect type, recall
and FPR at the calibrated map_max threshold, and the map step's seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

import common

# Validation counts per defect type of a synthetic split, and pasted copies per
# good real image.
VALIDATION_PER_TYPE = 150


def _synthetic_splits(model, splits):
    from ic_anogan.config import TEXTURE_TEST_COUNTS
    from ic_anogan.data import synthetic
    package = model.metadata.get("data", {}).get("synthetic_package") or "sop"
    size = model.model_config.image_size
    types = synthetic.defect_types(package)
    counts = {"validation": {"good": 300, **{t: VALIDATION_PER_TYPE for t in types}},
              "test": (dict(TEXTURE_TEST_COUNTS) if package == "texture"
                       else common.study_test_counts(200))}
    return {name: common.synthetic_split(size, counts[name], name, package) for name in splits}


def pasted_validation(good, seed: int = 0):
    """Good real images and, per surface defect type, one pasted copy of each."""
    from ic_anogan.data.image_set import ImageSet
    from ic_anogan.data.synthetic_defects import SURFACE_DEFECT_TYPES, paste_defect
    unit = (good.images[..., 0] + 1.0) / 2.0
    images, masks, types, ids = [good.images], [np.zeros_like(good.images)], \
        ["good"] * len(good), list(good.ids)
    for code, defect in enumerate(SURFACE_DEFECT_TYPES):
        rng = np.random.default_rng([seed, code])
        pasted = [paste_defect(rng, image, defect) for image in unit]
        images.append(np.stack([p * 2.0 - 1.0 for p, _ in pasted])[..., None].astype(np.float32))
        masks.append(np.stack([m for _, m in pasted])[..., None].astype(np.float32))
        types += [defect] * len(good)
        ids += [f"{i}+{defect}" for i in good.ids]
    labels = np.array([0 if t == "good" else 1 for t in types], np.int64)
    return ImageSet(np.concatenate(images), ids, labels, types, masks=np.concatenate(masks),
                    has_mask=labels == 1)


def block_features(model, images: np.ndarray, batch_size: int = 256) -> list:
    """D's block outputs at S/4 and S/8 for images [N, S, S, 1]: two arrays."""
    import keras
    d = model.discriminator
    wanted = {int(images.shape[1]) // 4, int(images.shape[1]) // 8}
    out = {size: [] for size in wanted}
    for begin in range(0, len(images), batch_size):
        h = images[begin:begin + batch_size]
        for conv, norm in zip(d.convs, d.norms):
            h = conv(h)
            h = (keras.ops.maximum(h, 0.2 * h) if norm is None else
                 keras.ops.leaky_relu(norm(h, training=False), negative_slope=0.2))
            if int(h.shape[1]) in out:
                out[int(h.shape[1])].append(np.asarray(h))
    return [np.concatenate(out[size]) for size in sorted(wanted, reverse=True)]


def feature_residual(model, images: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """Mean over D's two blocks of the channel-averaged |f_l(x) − f_l(G(z))|, upsampled
    to the image [N, S, S, 1]."""
    import tensorflow as tf
    size = int(images.shape[1])
    total = 0.0
    for fx, fg in zip(block_features(model, images), block_features(model, reconstructions)):
        residual = np.abs(fx - fg).mean(axis=-1, keepdims=True)
        up = tf.image.resize(residual, [size, size], method="bilinear").numpy()
        total = total + up / max(float(np.median(up)), 1e-6)
    return (total / 2.0).astype(np.float32)


def search_outputs(model, search, sets: dict, cache: str) -> dict:
    """{split: (ImageSet, ScoreOutputs, feature residual)}, searched once and cached."""
    from ic_anogan.config import MapConfig
    from ic_anogan.scoring import anomaly_maps, scorer as scoring
    from ic_anogan.scoring.outputs import ScoreOutputs
    scorer = scoring.SearchScorer(model, search)
    result = {}
    for name, images in sets.items():
        path = os.path.join(cache, f"{name}_{search.mode}_{search.steps}.npz")
        if os.path.exists(path):
            stored = np.load(path)
            outputs = ScoreOutputs.from_search({k: stored[k] for k in stored.files
                                                if k != "features"})
            features = stored["features"]
        else:
            start = time.perf_counter()
            outputs = scorer.score(images, 256)
            seconds = time.perf_counter() - start
            print(f"  {name}: {len(images)} images searched in {seconds:.0f} s "
                  f"({1000 * seconds / len(images):.1f} ms per image)", flush=True)
            features = feature_residual(model, images.images, outputs.reconstruction)
            os.makedirs(cache, exist_ok=True)
            from ic_anogan.scoring.outputs import SEARCH_OUTPUTS
            np.savez(path, features=features,
                     **{k: getattr(outputs, k) for k in SEARCH_OUTPUTS})
        # The golden-template candidate: x itself, standardised by the good parts'
        # intensities (by its latent neighbours'), smoothed like the residuals.
        intensity = anomaly_maps.smoothed_residual(
            images.images, np.zeros_like(images.images),
            MapConfig(residual="signed", alignment_tolerance=0)).numpy()
        result[name] = (images, outputs, {"features": features, "intensity": intensity})
    return result


def evaluate(name, config, calibration, scored, precomputed=None, seed=0):
    """One row: calibrate `config` on the held-out split, score `scored`; `precomputed`
    names a map of the splits' extras (D's features, the learned comparison) to use
    instead of the residual of config."""
    import tensorflow as tf

    from ic_anogan.scoring import anomaly_maps, map_calibration
    held, held_out, held_extras = calibration
    images, outputs, extras = scored
    start = time.perf_counter()
    resolved, reasons = config.resolve(images.image_size, len(held))
    if precomputed:
        features = extras[precomputed]
        calibrated = map_calibration.calibrate_smoothed(held_extras[precomputed], resolved,
                                                        reasons, seed, held_out.latent)
        maps = [anomaly_maps.outputs_from_smoothed(tf.constant(features[b:b + 256]),
                                                   calibrated.statistics,
                                                   outputs.latent[b:b + 256])
                for b in range(0, len(images), 256)]
        maps = {k: np.concatenate([m[k].numpy() for m in maps]) for k in maps[0]}
    else:
        calibrated = map_calibration.calibrate(held.images, held_out.reconstruction, config,
                                               seed=seed, latents=held_out.latent)
        maps = anomaly_maps.score_maps(images.images, outputs.reconstruction,
                                       calibrated.statistics, latents=outputs.latent)
    seconds = time.perf_counter() - start
    return name, calibrated, maps, seconds


def row(name, images, outputs, good_scores, maps, seconds):
    """One table row: `outputs` with the map outputs `maps`, judged by common.map_figures."""
    from ic_anogan.config import MAP_SCORES
    scored = dataclasses.replace(
        outputs, map_scores={s: maps[s] for s in MAP_SCORES}, map_x=maps["map_x"],
        map_y=maps["map_y"], standardised_map=maps["standardised_map"],
        defect_mask=maps["defect_mask"])
    return {"name": name, "seconds": seconds, **common.map_figures(images, scored, good_scores)}


PRECOMPUTED = ("features", "learned", "intensity")
# Precomputed maps that are signed (standardised two-sided, like the signed residual).
SIGNED_PRECOMPUTED = ("intensity",)


def candidates() -> dict:
    """name -> (MapConfig, the precomputed map it reads or None)."""
    from ic_anogan.config import MapConfig
    rows = {}
    for residual in ("absolute", "signed", "gradient", "ssim") + PRECOMPUTED:
        for area in (0, 3):
            config = MapConfig(residual=("signed" if residual in SIGNED_PRECOMPUTED else
                                         "absolute" if residual in PRECOMPUTED else residual),
                               area_scales=area)
            label = ("today" if residual == "absolute" and not area else
                     residual + (f", area {area}" if area else ""))
            rows[label] = (config, residual if residual in PRECOMPUTED else None)
    return rows


COMBINATIONS = (("absolute, area 3", "gradient, area 3"), ("absolute, area 3", "ssim, area 3"),
                ("absolute, area 3", "features, area 3"), ("gradient, area 3", "features, area 3"),
                ("absolute, area 3", "learned, area 3"), ("ssim, area 3", "learned, area 3"),
                ("signed, area 3", "absolute, area 3"), ("signed, area 3", "gradient, area 3"),
                ("signed, area 3", "ssim, area 3"), ("signed, area 3", "learned, area 3"),
                ("absolute, area 3", "intensity, area 3"), ("signed, area 3", "intensity, area 3"),
                ("ssim, area 3", "intensity, area 3"))


def print_table(title: str, rows: list) -> None:
    common.print_map_table(
        f"{title}: AUROC / TPR at 1% FPR / pixel AUROC / PRO per defect type; overall AUROC / "
        "TPR; recall (FPR) at the calibrated map_max threshold", rows,
        ("auroc", "tpr", "pixel_auroc", "pro"), overall=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", default=None,
                        help="a root with validation/good/ and test/ (benchmarks/elpv.py's)")
    parser.add_argument("--mode", default="encoder_search")
    parser.add_argument("--steps", type=int, default=None, help="Γ; default: the mode's")
    parser.add_argument("--splits", nargs="+", default=["validation", "test"],
                        choices=["validation", "test"])
    parser.add_argument("--only", nargs="*", default=None, help="row names to run")
    parser.add_argument("--cache", default=None, help="default: <model_dir>/surface_cache")
    parser.add_argument("--results", default=None, help="append the rows as JSON lines here")
    parser.add_argument("--learned", action="store_true",
                        help="also train the learned comparison (learned_comparison.py) on the "
                        "model's training images and add its rows")
    parser.add_argument("--learned_steps", type=int, default=3000)
    args = parser.parse_args()

    from ic_anogan.config import DataConfig, SearchConfig, search_config_for_mode
    from ic_anogan.data import loading as data

    model = common.load(args.model_dir)
    print(common.runtime_line(), flush=True)
    size = model.model_config.image_size
    held = common.heldout_images(model)
    if args.data_dir:
        sets = {}
        if "validation" in args.splits:
            good = data.load_scoring_set(
                DataConfig(data_dir=os.path.join(args.data_dir, "validation")), size)
            sets["validation"] = pasted_validation(good)
        if "test" in args.splits:
            sets["test"] = data.load_scoring_set(
                DataConfig(data_dir=os.path.join(args.data_dir, "test")), size)
    else:
        sets = _synthetic_splits(model, args.splits)
    search = search_config_for_mode(args.mode, SearchConfig(), args.steps)
    cache = args.cache or os.path.join(args.model_dir, "surface_cache")
    searched = search_outputs(model, search, {"heldout": held, **sets}, cache)
    calibration = searched.pop("heldout")
    if args.learned:
        import learned_comparison
        from ic_anogan.scoring import scorer as scoring
        stored = model.metadata
        train = data.split_holdout(data.load_training_set(
            DataConfig(data_dir=None if stored["data"]["spec"] == "synthetic"
                       else stored["data"]["spec"],
                       synthetic_train_count=stored["data"].get("train_images", 0)
                       + stored["data"].get("heldout_images", 0) or 3277,
                       synthetic_package=stored["data"].get("synthetic_package")),
            size, seed=stored["train"]["seed"]), stored["train"]["validation_fraction"],
            stored["train"]["seed"])[0]
        network, _ = learned_comparison.train(scoring.SearchScorer(model, search), train.images,
                                              steps=args.learned_steps)
        for images, outputs, extras in [calibration, *searched.values()]:
            start = time.perf_counter()
            extras["learned"] = learned_comparison.probability_map(
                network, images.images, outputs.reconstruction)
            print(f"  learned map: {1000 * (time.perf_counter() - start) / len(images):.2f} ms "
                  "per image", flush=True)
    chosen = {k: v for k, v in candidates().items() if not args.only or k in args.only}
    for split, scored in searched.items():
        images, outputs, _ = scored
        rows, kept = [], {}
        for name, (config, precomputed) in chosen.items():
            if precomputed and precomputed not in scored[2]:
                continue
            _, calibrated, maps, seconds = evaluate(name, config, calibration, scored,
                                                    precomputed, search.seed)
            kept[name] = (calibrated.good_scores, maps)
            rows.append(row(name, images, outputs, calibrated.good_scores, maps, seconds))
        for a, b in COMBINATIONS:
            if a in kept and b in kept:
                (good_a, maps_a), (good_b, maps_b) = kept[a], kept[b]
                good = {s: np.maximum(good_a[s], good_b[s]) for s in good_a}
                maps = {"standardised_map": np.maximum(maps_a["standardised_map"],
                                                       maps_b["standardised_map"])}
                maps["map_max"] = np.maximum(maps_a["map_max"], maps_b["map_max"])
                maps["map_topk"] = np.maximum(maps_a["map_topk"], maps_b["map_topk"])
                take_a = maps_a["map_max"] >= maps_b["map_max"]
                for k in ("map_x", "map_y"):
                    maps[k] = np.where(take_a, maps_a[k], maps_b[k])
                maps["defect_mask"] = np.maximum(maps_a["defect_mask"], maps_b["defect_mask"])
                rows.append(row(f"max({a}; {b})", images, outputs, good, maps, 0.0))
        print_table(f"{args.model_dir}, {split} split, {search.mode} Γ = {search.steps}", rows)
        if args.results:
            with open(args.results, "a") as f:
                for r in rows:
                    f.write(json.dumps({"model_dir": os.path.abspath(args.model_dir),
                                        "data_dir": args.data_dir, "split": split,
                                        "mode": search.mode, "steps": search.steps, **r}) + "\n")


if __name__ == "__main__":
    main()
