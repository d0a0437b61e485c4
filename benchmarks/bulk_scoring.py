"""Bulk scoring: images/s and memory of the exported model over stored PNG files.

    .venv/bin/python benchmarks/bulk_scoring.py --model_dir=models/demo --work_dir=/tmp/bulk

Writes `--images` synthetic test images (good, short fill, void, chipped edge,
scratch) as PNG files, exports `--model_dir` if `--saved_model` is not given,
then scores the same files, each configuration in a fresh process:

  direct        the export's signature called in batches of --batch files, in one
                process, no Beam: the floor every other way pays on top of
  score_main    score_main.py --saved_model (one process, writes the usual report)
  beam 1        bulk_score_main.py, in-process runner, one worker
  beam 2        bulk_score_main.py, two SDK worker processes (multi_processing),
                TensorFlow limited to cores/2 threads in each, and again unlimited
                (--tf_threads=0), to measure what the limit is worth

and prints images/s (whole command, and the scoring part where the command says
it), the peak memory of each process that held the model, and Beam's overhead
against the direct calls. Prints the CPU beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

import common  # first: importing ic_anogan sets oneDNN before TensorFlow loads

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COUNTS = {"good": 1100, "short_fill": 300, "void": 200, "chipped_edge": 200, "scratch": 200}


def write_images(folder: str, image_size: int, total: int) -> int:
    """The synthetic test split as PNG files (counts scaled to `total`)."""
    import numpy as np
    from PIL import Image

    from ic_anogan.config import DataConfig
    from ic_anogan.data import loading
    from ic_anogan.data.preprocessing import from_model_range
    if os.path.isdir(folder) and len(os.listdir(folder)) == total:
        return total
    os.makedirs(folder, exist_ok=True)
    scale = total / sum(COUNTS.values())
    counts = {name: int(round(count * scale)) for name, count in COUNTS.items()}
    counts["good"] += total - sum(counts.values())
    images = loading.load_scoring_set(DataConfig(synthetic_counts=counts), image_size)
    for i, (pixels, kind) in enumerate(zip(images.images, images.defect_types)):
        gray = np.round(from_model_range(pixels[..., 0]) * 255.0).astype(np.uint8)
        Image.fromarray(gray).save(os.path.join(folder, f"{i:05d}_{kind or 'good'}.png"))
    return len(images.images)


def timed(command: list, env: dict) -> tuple:
    """(seconds, stdout and stderr, peak resident MB of the command's own process and the
    children it waited for), the command run in a fresh process."""
    import tempfile
    with tempfile.TemporaryFile("w+") as log:
        start = time.time()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True,
                                   env=env, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.time() - start
        log.seek(0)
        output = log.read()
    if status:
        sys.exit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return seconds, output, usage.ru_maxrss / 1024.0


def direct(saved_model: str, signature: str, folder: str, batch: int) -> tuple:
    """(seconds scoring, images) of the signature called on batches of file bytes."""
    import tensorflow as tf
    function = tf.saved_model.load(saved_model).signatures[signature]
    paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    payloads = [open(p, "rb").read() for p in paths]
    function(image_bytes=tf.constant(payloads[:batch]))  # traced and warm
    start = time.time()
    for begin in range(0, len(payloads), batch):
        function(image_bytes=tf.constant(payloads[begin:begin + batch]))
    return time.time() - start, len(payloads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", default="models/demo")
    parser.add_argument("--saved_model", help="an export version; default: export --model_dir")
    parser.add_argument("--work_dir", default="/tmp/ic_anogan_bulk")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--mode", help="default: the export's default mode")
    parser.add_argument("--batch", type=int, default=32, help="files per signature call")
    parser.add_argument("--only", nargs="*", default=["direct", "score_main", "beam1", "beam2",
                                                      "beam2_unlimited"])
    args = parser.parse_args()
    python = sys.executable
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    saved_model = args.saved_model
    if not saved_model:
        base = os.path.join(args.work_dir, "export")
        if not os.path.isdir(base):
            timed([python, "export_main.py", f"--model_dir={args.model_dir}",
                   f"--export_dir={base}", "--mode=all"], env)
        saved_model = os.path.join(base, max(os.listdir(base), key=lambda v: int(v)))
    from ic_anogan.jobs import bulk_inputs
    export = bulk_inputs.resolve_export(saved_model, args.mode)
    size = int(export.settings["model"]["image_size"])
    folder = os.path.join(args.work_dir, f"images_{args.images}")
    count = write_images(folder, size, args.images)
    print(common.runtime_line())
    print(f"{count} PNG files of {size}x{size}; export {export.path}, mode {export.mode} "
          f"(Γ = {export.settings['modes'][export.mode]['search']['steps']}), "
          f"signature {export.signature}")
    rows = []
    if "direct" in args.only:
        seconds, scored = direct(export.path, export.signature, folder, args.batch)
        rows.append(("direct signature calls", scored / seconds, scored / seconds, "-"))
    if "score_main" in args.only:
        seconds, output, peak = timed([python, "score_main.py", f"--saved_model={export.path}",
                                 f"--data_dir={folder}", f"--mode={export.mode}",
                                 f"--search_batch_size={args.batch}",
                                 f"--output_dir={args.work_dir}/score_main",
                                 f"--log_dir={args.work_dir}/score_main_logs"], env)
        found = re.search(r"scored (\d+) images in ([\d.]+) s", output)
        scoring = int(found.group(1)) / float(found.group(2)) if found else float("nan")
        rows.append(("score_main.py --saved_model", count / seconds, scoring, f"{peak:.0f}"))
    for name, workers, threads in (("beam1", 1, None), ("beam2", 2, None),
                                   ("beam2_unlimited", 2, 0)):
        if name not in args.only:
            continue
        output_prefix = f"{args.work_dir}/{name}/"
        extra = ([f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
                 if workers > 1 else [])
        if threads is not None:
            extra.append(f"--tf_threads={threads}")
        seconds, output, peak = timed([python, "bulk_score_main.py", f"--saved_model={export.path}",
                                 f"--input_pattern={folder}/*.png", f"--output={output_prefix}",
                                 f"--mode={export.mode}", f"--max_batch_size={args.batch}",
                                 *extra], env)
        summary = json.load(open(f"{output_prefix}summary.json"))
        assert summary["scored"] == count, summary
        peaks = re.search(r"peak memory of the scoring processes: (.*)", output)
        label = f"Beam, {workers} worker{'s' if workers > 1 else ''}" + (
            "" if workers == 1 else ", TF threads unlimited" if threads == 0
            else ", TF threads = cores / workers")
        rows.append((label, count / seconds,
                     None, f"{peak:.0f} (command); workers: "
                     + (peaks.group(1) if peaks else "not reported")))
    print("| how | images/s (whole command) | images/s (scoring) | peak memory (MB) |")
    print("|---|---:|---:|---|")
    for how, whole, scoring, memory in rows:
        print(f"| {how} | {whole:.1f} | {'-' if scoring is None else f'{scoring:.1f}'} | "
              f"{memory} |")
    base = next((r[1] for r in rows if r[0].startswith("direct")), None)
    for how, whole, _, _ in rows:
        if base and how.startswith("Beam"):
            print(f"{how}: {base / whole:.2f}x the time of the direct calls")


if __name__ == "__main__":
    main()
