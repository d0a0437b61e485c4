"""Seconds per image of each scoring mode, measured side by side in one process.

    python benchmarks/mode_speed.py --base_filters 16 64 --batch_size 64

For each network width: random N(0, 0.02) weights (speed does not depend on
training), a batch of --batch_size images, and per mode the median over
--repeats timed runs after a warm-up (tracing excluded):
search at each of --search_steps, encoder (one forward pass of E, G and f),
and encoder_search at each of --encoder_search_steps. Prints a Markdown
table with seconds per image, images per second, and the speed-up over the
study's search at Γ = 500 (issue 6's target: encoder ≥ 500x).
"""

from __future__ import annotations

import argparse

import common
import numpy as np


def _median_seconds(search, images, repeats: int) -> float:
    """Median seconds of start + Γ steps + finish on `images`.

    The warm-up traces the same three graph functions with a 1-step advance,
    so a long Γ is not paid twice.
    """
    steps = search.config.steps

    def run():
        state = search.start(images)
        if steps:
            state = search.advance(images, state, steps)
        return search.finish(images, state)["anomaly_score"].numpy()

    return common.median_seconds(run, repeats, warm_up=lambda: search.finish(
        images, search.advance(images, search.start(images), min(steps, 1))))[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--latent_dim", type=int, default=100)
    parser.add_argument("--base_filters", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--search_steps", type=int, nargs="+", default=[500])
    parser.add_argument("--encoder_search_steps", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per searching mode (the encoder gets 10x as many)")
    parser.add_argument("--search_repeats", type=int, default=1,
                        help="timed runs of search at Γ >= 500 (minutes each at 64 filters)")
    args = parser.parse_args()

    from ic_anogan.config import ModelConfig, SearchConfig, search_config_for_mode
    from ic_anogan.models.networks import build_encoder, build_models
    from ic_anogan.scoring.search import LatentSearch

    print("| base filters | mode | Γ | s / image | images / s | faster than search Γ=500 |")
    print("|---:|---|---:|---:|---:|---:|")
    for filters in args.base_filters:
        config = ModelConfig(args.image_size, args.latent_dim, filters)
        generator, _, features = build_models(config, seed=0)
        encoder = build_encoder(config, seed=0)
        images = np.random.default_rng(0).uniform(
            -1, 1, (args.batch_size, args.image_size, args.image_size, 1)).astype(np.float32)
        grid = ([("search", s) for s in args.search_steps] + [("encoder", 0)]
                + [("encoder_search", s) for s in args.encoder_search_steps])
        rows = []
        for mode, steps in grid:
            search = LatentSearch(generator, features,
                                  search_config_for_mode(mode, SearchConfig(), steps=steps),
                                  encoder=encoder)
            repeats = (args.repeats * 10 if mode == "encoder" else
                       args.search_repeats if steps >= 500 else args.repeats)
            rows.append((mode, steps, _median_seconds(search, images, repeats) / len(images)))
        reference = next((s for m, g, s in rows if m == "search" and g == 500), None)
        for mode, steps, seconds in rows:
            speed = f"{reference / seconds:.0f}x" if reference else "-"
            print(f"| {filters} | {mode} | {steps} | {seconds:.5f} | {1 / seconds:.1f} | "
                  f"{speed} |", flush=True)


if __name__ == "__main__":
    main()
