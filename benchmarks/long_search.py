"""Wall time and peak memory of long searches (the study also ran Γ = 100000).

    python benchmarks/long_search.py --steps 1000 5000 20000 --batch_size=16

Each Γ runs in a fresh process (so peak RSS belongs to that Γ alone): build
the models, run a 10-step warm-up search, then one timed search of Γ steps.
It prints seconds, seconds per step and peak resident memory per Γ, then the
time extrapolated to --target_steps (default 100000) from the longest run.
Memory flat across Γ is the claim under test: the search is one
tf.while_loop whose state is z and Adam's moments, so nothing accumulates.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def one_run(args) -> dict:
    import numpy as np

    from ic_anogan.config import ModelConfig, SearchConfig
    from ic_anogan.models.networks import build_models
    from ic_anogan.scoring.search import LatentSearch

    config = ModelConfig(args.image_size, 100, args.base_filters)
    generator, _, features = build_models(config, seed=0)
    images = np.random.default_rng(0).uniform(
        -1, 1, (args.batch_size, args.image_size, args.image_size, 1)).astype(np.float32)
    warm = LatentSearch(generator, features, SearchConfig(steps=10))
    warm.score(images)["anomaly_score"].numpy()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    search = LatentSearch(generator, features, SearchConfig(steps=args.one))
    start = time.perf_counter()
    search.score(images)["anomaly_score"].numpy()
    seconds = time.perf_counter() - start
    return {"steps": args.one, "seconds": seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_after_warmup_mib": rss_before / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--target_steps", type=int, default=100000)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--base_filters", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print("RESULT " + json.dumps(one_run(args)), flush=True)
        return

    print(f"image {args.image_size}, base_filters {args.base_filters}, batch {args.batch_size}")
    print("| Γ | seconds | ms / step | img·steps/s | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|---:|")
    results = []
    for steps in args.steps:
        command = [sys.executable, __file__, f"--one={steps}", f"--image_size={args.image_size}",
                   f"--base_filters={args.base_filters}", f"--batch_size={args.batch_size}"]
        done = subprocess.run(command, capture_output=True, text=True,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(f"| {steps} | failed: {done.stderr.strip().splitlines()[-1:]} | | | |")
            continue
        result = json.loads(lines[0][len("RESULT "):])
        results.append(result)
        print(f"| {steps} | {result['seconds']:.1f} | {1e3 * result['seconds'] / steps:.2f} | "
              f"{args.batch_size * steps / result['seconds']:.1f} | "
              f"{result['peak_rss_mib']:.0f} |", flush=True)
    if results:
        longest = max(results, key=lambda r: r["steps"])
        per_step = longest["seconds"] / longest["steps"]
        rss = [r["peak_rss_mib"] for r in results]
        print(f"extrapolated Γ={args.target_steps}: {per_step * args.target_steps / 60:.1f} min "
              f"for {args.batch_size} images ({per_step * args.target_steps / args.batch_size:.1f}"
              f" s per image); peak RSS across Γ: {min(rss):.0f}-{max(rss):.0f} MiB")


if __name__ == "__main__":
    main()
