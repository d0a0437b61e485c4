"""oneDNN off, the package's default, and oneDNN forced on; XLA off and on: search and training.

    python benchmarks/onednn.py                       # search at 64 filters, training at 16
    python benchmarks/onednn.py --quick               # small settings, to check it runs

Every cell runs benchmarks/search_speed.py or benchmarks/train_speed.py in a
fresh process (TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, at import), one
after another, never two at once. Rows:
  TF_ENABLE_ONEDNN_OPTS=0   oneDNN off, whatever the CPU;
  unset                     what a user gets: the package turns oneDNN on
                            on x86 unless the variable is set;
  TF_ENABLE_ONEDNN_OPTS=1   forced on.
Prints the CPU and one markdown table; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SETTINGS = (("0", "TF_ENABLE_ONEDNN_OPTS=0"), (None, "unset (package default)"),
            ("1", "TF_ENABLE_ONEDNN_OPTS=1"))


def run(script: str, arguments: list, onednn, jit: bool) -> tuple:
    """(rate, the runtime line) of one benchmark process."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if onednn is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn
    command = [sys.executable, os.path.join(HERE, script), *arguments]
    if jit:
        command.append("--jit_compile")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return float("nan"), f"failed: {done.stderr.strip().splitlines()[-1:]}"
    rate = float(re.search(r"(?:img_steps|train_images)_per_s=([0-9.]+)", done.stdout).group(1))
    runtime = next((line for line in done.stdout.splitlines() if line.startswith("oneDNN")), "")
    return rate, runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--medium", action="store_true",
                        help="32 filters, batch 32, fewer repeats: about 6 min on 2 cores")
    parser.add_argument("--no_jit", action="store_true", help="skip the XLA columns")
    args = parser.parse_args()
    if args.quick:
        search = ["--image_size=32", "--base_filters=8", "--batch_size=8", "--steps=5",
                  "--repeats=2", "--no_ceiling"]
        train = ["--image_size=32", "--base_filters=8", "--batch_size=8", "--steps=5",
                 "--repeats=2"]
    elif args.medium:
        search = ["--image_size=64", "--base_filters=32", "--batch_size=32", "--steps=10",
                  "--repeats=3", "--no_ceiling"]
        train = ["--image_size=64", "--base_filters=16", "--batch_size=64", "--steps=20",
                 "--repeats=2"]
    else:
        search = ["--image_size=64", "--base_filters=64", "--batch_size=64", "--steps=20",
                  "--repeats=5", "--no_ceiling"]
        train = ["--image_size=64", "--base_filters=16", "--batch_size=64", "--steps=40",
                 "--repeats=3"]
    jits = (False,) if args.no_jit else (False, True)
    print(f"search_speed.py {' '.join(search)}\ntrain_speed.py {' '.join(train)}", flush=True)
    rows, runtime_lines = [], {}
    for value, label in SETTINGS:
        row = [label]
        for jit in jits:
            for script, arguments in (("search_speed.py", search), ("train_speed.py", train)):
                rate, runtime = run(script, arguments, value, jit)
                runtime_lines[label] = runtime
                row.append(rate)
                print(f"  {label}, xla {jit}, {script}: {rate:.1f}  [{runtime}]", flush=True)
        rows.append(row)
    header = ["setting"] + [f"{what}{', XLA' if jit else ''}" for jit in jits
                            for what in ("search img·steps/s", "training img/s")]
    print("\n| " + " | ".join(header) + " |\n|---|" + "---:|" * (len(header) - 1))
    baseline = rows[0]
    for row in rows:
        cells = [f"{v:.1f} ({v / b:.2f}x)" for v, b in zip(row[1:], baseline[1:])]
        print(f"| {row[0]} | " + " | ".join(cells) + " |")
    print("\n(ratios against TF_ENABLE_ONEDNN_OPTS=0 in the same column)")
    for label, line in runtime_lines.items():
        print(f"{label}: {line}")


if __name__ == "__main__":
    main()
