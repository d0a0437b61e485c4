"""Wall time of a GAN epoch on one worker and on two workers (MultiWorkerMirroredStrategy).

    python benchmarks/multi_worker.py                       # the demo's model, 2 epochs
    python benchmarks/multi_worker.py --base_filters 64 --epochs 3

Runs the GAN training of gan.train three times on this machine, each worker
in its own process on 127.0.0.1: one process with the default strategy and
global batch B; one worker under MultiWorkerMirroredStrategy with batch B;
two workers with B/2 each (the same global batch, the same updates). Prints
the seconds of every epoch after the first (the first traces the graphs), and
how far the two-worker weights are from the one-process ones, beside how far
two one-process runs drift when only the order of float sums differs.
Both workers share this machine's cores, so two workers show that the path
works and what the collectives cost, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import common

WORKER = textwrap.dedent("""
    import json, sys, time
    import keras
    from ic_anogan.training import distribution, gan
    from ic_anogan.config import DataConfig, ModelConfig, TrainConfig
    args = json.loads(sys.argv[1])
    strategy = distribution.make_strategy(args["strategy"])
    times = []
    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()
        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)
    gan.train(model_dir=args["model_dir"], log_dir=args["model_dir"] + "_logs",
                model_config=ModelConfig(64, 100, args["base_filters"]),
                train_config=TrainConfig(batch_size=args["batch_size"], epochs=args["epochs"],
                                         monitor_every_epochs=0),
                data_config=DataConfig(), strategy=strategy, verbose=0,
                extra_callbacks=[lambda **_: EpochTimer()])
    print("EPOCH_SECONDS", json.dumps(times), flush=True)
""")


def run(workers: int, strategy: str, batch_size: int, args, work_dir: str,
        name: str = "", env_extra: dict = None) -> list:
    """Per-epoch seconds of the chief (worker 0)."""
    from ic_anogan.training import distribution
    tf_configs = distribution.local_cluster(workers)
    processes = []
    for index in range(workers):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
        if strategy == "multi_worker":
            env["TF_CONFIG"] = tf_configs[index]
        spec = {"strategy": strategy, "batch_size": batch_size, "epochs": args.epochs,
                "base_filters": args.base_filters,
                "model_dir": os.path.join(work_dir, name or f"{strategy}_{workers}")}
        processes.append(subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(spec)],
                                          env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate() for p in processes]
    for p, (out, err) in zip(processes, outputs):
        if p.returncode:
            sys.exit(err[-3000:])
    line = [l for l in outputs[0][0].splitlines() if l.startswith("EPOCH_SECONDS")][0]
    return json.loads(line.split(" ", 1)[1])


def _largest_difference(first: str, second: str) -> tuple:
    """(largest |difference|, largest |weight|) over G's and D's kernels in two model dirs."""
    import numpy as np
    a, b = (common.load(d) for d in (first, second))
    pairs = [(x, y) for x, y in zip(a.generator.weights + a.discriminator.weights,
                                    b.generator.weights + b.discriminator.weights)
             if "kernel" in x.path]
    return (max(float(np.abs(x.numpy() - y.numpy()).max()) for x, y in pairs),
            max(float(np.abs(x.numpy()).max()) for x, _ in pairs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base_filters", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=64, help="the global batch")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work_dir:
        for workers, strategy, batch in ((1, "default", args.batch_size),
                                         (1, "multi_worker", args.batch_size),
                                         (2, "multi_worker", args.batch_size // 2)):
            seconds = run(workers, strategy, batch, args, work_dir)
            rows.append((workers, strategy, batch, seconds))
            print(f"{workers} worker(s), {strategy}, batch {batch} per worker: epochs "
                  + ", ".join(f"{s:.1f} s" for s in seconds), flush=True)
        difference = _largest_difference(os.path.join(work_dir, "default_1"),
                                         os.path.join(work_dir, "multi_worker_2"))
        # How far two one-process runs drift apart when only the order of float sums
        # differs (oneDNN off): GAN training with Adam amplifies such differences.
        run(1, "default", args.batch_size, args, work_dir, name="default_no_onednn",
            env_extra={"TF_ENABLE_ONEDNN_OPTS": "0"})
        float_order = _largest_difference(os.path.join(work_dir, "default_1"),
                                          os.path.join(work_dir, "default_no_onednn"))
    print(f"\nGAN epoch wall time, 3277 synthetic images (2949 trained on), 64x64, "
          f"base_filters {args.base_filters}, global batch {args.batch_size}; epochs after "
          "the first:\n")
    print("| workers | strategy | batch per worker | s / epoch |")
    print("|---:|---|---:|---:|")
    for workers, strategy, batch, seconds in rows:
        later = seconds[1:] or seconds
        print(f"| {workers} | {strategy} | {batch} | {sum(later) / len(later):.1f} |")
    print(f"\nlargest |difference| of G's and D's kernels, one process against two workers: "
          f"{difference[0]:.2e}; one process against one process with oneDNN off (another "
          f"order of float sums): {float_order[0]:.2e}; largest |kernel weight| "
          f"{difference[1]:.2e}")


if __name__ == "__main__":
    main()
