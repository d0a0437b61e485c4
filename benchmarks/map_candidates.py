"""Anomaly-map candidates side by side, per defect type, from one search per split.

    # the synthetic validation split (for choosing) and test split (for reporting)
    python benchmarks/map_candidates.py --model_dir models/demo
    # a labelled folder of real images (good/ and defect folders), e.g. benchmarks/elpv.py's
    python benchmarks/map_candidates.py --model_dir /tmp/elpv/model --data_dir /tmp/elpv/test

The search runs once per split in the chosen mode (default encoder_search,
Γ = 50) on the model's held-out good images and on the images to score; every
candidate map setting (anomaly_maps.MapConfig) is then calibrated on the
held-out reconstructions exactly as training calibrates it (cross-fitted
thresholds by the library's rule at the 99th percentile, per-pixel statistics) and applied to the
same reconstructions of the scored images. So every row of a table scores the
same z, and rows differ only in how the map turns a residual into a
decision. Prints per defect type AUROC / TPR at 1% FPR / PRO / pixel AUROC, recall and FPR
at the calibrated threshold, and the seconds the map step took (calibrating
on the held-out images and mapping the scored ones; the search, which every
row shares, is timed once above the tables).

Rows:
  before          the map as it was before the alignment tolerance (the
                  exact residual |x − G(z)|, one set of statistics)
  tolerance 1, 2  alignment-tolerant residual (shifts up to 1 or 2 pixels)
  neighbours 30   per-image statistics from the 30 nearest held-out images
  coarse 7x7      a coarser smoothing scale alone
  default         the library's MapConfig(): tolerance and neighbours resolved
                  from the image size and the held-out images (MapConfig.resolve),
                  and beside it with 10 or 100 neighbours or tolerance 2
  previous default  tolerance 1 and 30 neighbours at every size (before the rule)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import common

DEFECTS = common.DEFECT_TYPES


def candidates() -> dict:
    from ic_anogan.config import MapConfig
    base = MapConfig(alignment_tolerance=0, neighbours=0)
    return {"before": base,
            "tolerance 1": dataclasses.replace(base, alignment_tolerance=1),
            "tolerance 2": dataclasses.replace(base, alignment_tolerance=2),
            "neighbours 30": dataclasses.replace(base, neighbours=30),
            "coarse 7x7": dataclasses.replace(base, kernel_size=7),
            "default": MapConfig(),
            "previous default (1 px, 30 neighbours)": MapConfig(alignment_tolerance=1,
                                                                neighbours=30),
            "default, neighbours 10": dataclasses.replace(MapConfig(), neighbours=10),
            "default, neighbours 100": dataclasses.replace(MapConfig(), neighbours=100),
            "default, tolerance 2": dataclasses.replace(MapConfig(), alignment_tolerance=2)}


def evaluate(name, config, heldout, heldout_outputs, images, outputs, seed):
    """One row: calibrate `config` on the held-out reconstructions, score `outputs`."""
    from ic_anogan.scoring import map_calibration, scorer as scoring
    start = time.perf_counter()
    calibrated = map_calibration.calibrate(heldout.images, heldout_outputs.reconstruction, config,
                                           seed=seed, latents=heldout_outputs.latent)
    scored = scoring.with_maps(images.images, outputs, calibrated.statistics)
    seconds = time.perf_counter() - start
    return {"name": name, "config": dataclasses.asdict(config), "seconds": seconds,
            **common.map_figures(images, scored, calibrated.good_scores)}


def print_table(title: str, rows: list) -> None:
    common.print_map_table(
        f"{title}: AUROC / TPR at 1% FPR / PRO / pixel AUROC per defect type, recall and FPR "
        "at the calibrated map_max threshold", rows, ("auroc", "tpr", "pro", "pixel_auroc"),
        overall=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", default=None,
                        help="a labelled folder (good/ and defect folders) instead of the "
                        "synthetic validation and test splits")
    parser.add_argument("--mode", default="encoder_search")
    parser.add_argument("--steps", type=int, default=None, help="Γ; default: the mode's")
    parser.add_argument("--only", nargs="*", default=None, help="candidate names to run")
    parser.add_argument("--splits", nargs="+", default=["validation", "test"],
                        choices=["validation", "test"], help="synthetic splits to score")
    parser.add_argument("--results", default=None, help="append the rows as JSON lines here")
    args = parser.parse_args()

    from ic_anogan.config import DataConfig, SearchConfig, search_config_for_mode
    from ic_anogan.data import loading as data
    from ic_anogan.scoring import scorer as scoring

    model = common.load(args.model_dir)
    print(common.runtime_line(), flush=True)
    heldout = common.heldout_images(model)
    size = model.model_config.image_size
    package = model.metadata.get("data", {}).get("synthetic_package")
    if args.data_dir:
        splits = {"images": data.load_scoring_set(DataConfig(data_dir=args.data_dir), size)}
    else:
        counts = {"validation": common.study_test_counts(200, good=300, short_fill=200),
                  "test": common.study_test_counts(200)}
        splits = {name: common.synthetic_split(size, counts[name], name, package)
                  for name in args.splits}
    search = search_config_for_mode(args.mode, SearchConfig(), args.steps)
    scorer = scoring.SearchScorer(model, search)
    start = time.perf_counter()
    heldout_outputs = scorer.score(heldout, 256)
    scored = {name: scorer.score(images, 256) for name, images in splits.items()}
    print(f"{args.model_dir}: {len(heldout)} held-out good images; "
          + ", ".join(f"{n} {len(s)} images" for n, s in splits.items())
          + f"; search {search.mode} Γ = {search.steps} in {time.perf_counter() - start:.0f} s",
          flush=True)
    chosen = {k: v for k, v in candidates().items() if not args.only or k in args.only}
    for split, images in splits.items():
        rows = [evaluate(name, config, heldout, heldout_outputs, images, scored[split],
                         search.seed) for name, config in chosen.items()]
        print_table(f"{args.model_dir}, {split} split, {search.mode} Γ = {search.steps}", rows)
        if args.results:
            with open(args.results, "a") as f:
                for r in rows:
                    f.write(json.dumps({"model_dir": os.path.abspath(args.model_dir),
                                        "split": split, "mode": search.mode,
                                        "steps": search.steps, **r}) + "\n")


if __name__ == "__main__":
    main()
