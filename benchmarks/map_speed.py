"""Scoring time per image of each mode with each map setting, side by side in one process.

    python benchmarks/map_speed.py --model_dir /tmp/models/ic_demo --maps today "signed, area 3"

For each mode and each map setting (real_surfaces.py's row names), the
setting is calibrated on the model's held-out images, and then a batch of
--images held-out images is scored end to end as score_main.py does it
(search, then maps) with `SearchScorer.score`. Times are medians of
--repeats runs after a warm-up (tracing excluded); settings alternate within
each repeat, so a noisy neighbour slows all of them alike. Prints ms per
image and the ratio to the first setting.
"""

from __future__ import annotations

import argparse
import statistics
import time

import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--maps", nargs="+", default=["today", "signed, area 3"])
    parser.add_argument("--modes", nargs="+", default=["search", "encoder", "encoder_search"])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import real_surfaces

    from ic_anogan.config import SearchConfig, search_config_for_mode
    from ic_anogan.data.image_set import ImageSet
    from ic_anogan.scoring import map_calibration, scorer as scoring

    model = common.load(args.model_dir)
    print(common.runtime_line(), flush=True)
    held = common.heldout_images(model)
    batch = ImageSet.unlabelled(held.images[:args.images])
    rows = real_surfaces.candidates()
    print(f"\n{args.model_dir}: {len(batch)} images per run, median of {args.repeats}\n")
    print("| mode | " + " | ".join(args.maps) + " |")
    print("|---|" + "---:|" * len(args.maps))
    for mode in args.modes:
        search = search_config_for_mode(mode, SearchConfig())
        plain = scoring.SearchScorer(model, search).score(held, 256)
        scorers = {}
        for name in args.maps:
            calibrated = map_calibration.calibrate(held.images, plain.reconstruction,
                                                   rows[name][0], latents=plain.latent)
            scorers[name] = scoring.SearchScorer(model, search, calibrated.statistics)
            scorers[name].score(batch, 256)  # warm-up: traces the search and the maps
        times = {name: [] for name in args.maps}
        for _ in range(args.repeats):
            for name, scorer in scorers.items():
                start = time.perf_counter()
                scorer.score(batch, 256)
                times[name].append(time.perf_counter() - start)
        first = statistics.median(times[args.maps[0]])
        cells = [f"{1000 * statistics.median(t) / len(batch):.2f} ms "
                 f"({statistics.median(t) / first:.2f}x)" for t in times.values()]
        print(f"| {mode} (Γ = {search.steps}) | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
