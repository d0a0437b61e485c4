"""Ours against the peer AnoGAN searches in ../shared/bench, in one run, as ratios.

    python benchmarks/compare_peers.py --torch_python=/opt/torch/bin/python

For each base-filter count (default 64 and 32, image size 64, z = 100, λ = 0.1)
it runs, one after another in separate processes:
  * ours: benchmarks/search_speed.py, batch 64, 20 steps;
  * naive_keras_fit: peer_naive_keras.py --mode fit (one fit per image, as the
    most used public Keras AnoGAN does), 16 images x 20 steps;
  * torch_batched and torch_batched_compile: peer_torch_batched.py, eager and
    --compile, 64 images x 20 steps;
and prints img·steps/s and ours/peer. Machines are shared and noisy, so only
ratios measured in the same run mean anything. A peer whose interpreter or
script is missing is reported as skipped; the run goes on.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RATE = re.compile(r"^img_steps_per_s=([0-9.eE+-]+)", re.M)


def run(name: str, command: list, timeout: int) -> tuple:
    """Runs one benchmark; returns (rate or None, note)."""
    if not os.path.exists(command[0]) and not command[0].endswith("python3"):
        return None, f"skipped: interpreter {command[0]} not found"
    if len(command) > 1 and command[1].endswith(".py") and not os.path.exists(command[1]):
        return None, f"skipped: {command[1]} not found"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    start = time.time()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError:
        return None, f"skipped: {command[0]} not found"
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s"
    match = RATE.findall(done.stdout)
    if done.returncode != 0 or not match:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:120]
        return None, f"failed ({last})"
    return float(match[-1]), f"{time.time() - start:.0f} s wall"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base_filters", type=int, nargs="+", default=[64, 32])
    parser.add_argument("--tf_python", default=sys.executable,
                        help="interpreter with TensorFlow for the naive Keras peer")
    parser.add_argument("--torch_python", default=os.environ.get("TORCHPY", ""),
                        help="interpreter with PyTorch for the torch peers (skipped if unset)")
    parser.add_argument("--bench_dir", default=os.path.join(HERE, "..", "..", "shared", "bench"))
    parser.add_argument("--timeout", type=int, default=1800)
    args = parser.parse_args()

    bench = os.path.abspath(args.bench_dir)
    rows = []
    for filters in args.base_filters:
        jobs = [
            ("ours", [sys.executable, os.path.join(HERE, "search_speed.py"), "--image_size=64",
                      f"--base_filters={filters}", "--batch_size=64", "--steps=20",
                      "--no_ceiling"]),
            ("naive_keras_fit", [args.tf_python, os.path.join(bench, "peer_naive_keras.py"),
                                 "--images", "16", "--steps", "20", "--mode", "fit",
                                 "--ngf", str(filters)]),
            ("torch_batched", [args.torch_python or "<unset TORCHPY>",
                               os.path.join(bench, "peer_torch_batched.py"), "--images", "64",
                               "--steps", "20", "--ngf", str(filters)]),
            ("torch_batched_compile", [args.torch_python or "<unset TORCHPY>",
                                       os.path.join(bench, "peer_torch_batched.py"),
                                       "--images", "64", "--steps", "20", "--compile",
                                       "--ngf", str(filters)]),
        ]
        results = {}
        for name, command in jobs:
            rate, note = run(name, command, args.timeout)
            results[name] = rate
            print(f"base_filters={filters} {name}: "
                  f"{'%.1f img_steps/s' % rate if rate else '-'} ({note})", flush=True)
        for name, rate in results.items():
            ratio = (results["ours"] / rate) if rate and results["ours"] else None
            rows.append((filters, name, rate, ratio))

    print("\n| base filters | implementation | img·steps/s | ours / this |")
    print("|---:|---|---:|---:|")
    for filters, name, rate, ratio in rows:
        print(f"| {filters} | {name} | {'%.1f' % rate if rate else 'skipped'} | "
              f"{'%.2fx' % ratio if ratio else '-'} |")


if __name__ == "__main__":
    main()
