"""The study's protocol on the built-in synthetic IC packages.

    python benchmarks/ic_synthetic.py --base_filters 16 --epochs 30 --steps 500 2000

Train on 3277 good packages (10% held out for the threshold), then score 1100
unseen good, 755 short-fill and --voids void packages at each Γ in --steps.
Prints AUROC, AUPRC, TPR at 1% FPR, pixel AUROC and the per-type AUROC, and
writes the score histogram per Γ (the study's figures 4 and 5) into
--output_dir. Settings are tuned with score_main.py --synthetic_split=validation,
never on this test split.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--base_filters", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=0.05)
    parser.add_argument("--voids", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model_dir", default="/tmp/ic_anogan_ic_synthetic/model",
                        help="reused if it holds a finished run with the same settings")
    parser.add_argument("--output_dir", default="/tmp/ic_anogan_ic_synthetic/results")
    args = parser.parse_args()

    from ic_anogan import data, metrics, plots, scoring, train
    from ic_anogan.calibration import calibrate
    from ic_anogan.config import ModelConfig, SearchConfig, TrainConfig
    from ic_anogan.search import LatentSearch

    start = time.time()
    result = train.train(
        model_dir=args.model_dir, log_dir=os.path.join(args.output_dir, "logs"),
        model_config=ModelConfig(args.image_size, 100, args.base_filters),
        train_config=TrainConfig(epochs=args.epochs, seed=args.seed, monitor_every_epochs=0),
        verbose=0)
    print(f"trained {result.epochs_run} epochs in {time.time() - start:.0f} s "
          f"(base_filters {args.base_filters}, image {args.image_size})", flush=True)
    model = train.load_trained_model(args.model_dir)
    test = data.load_scoring_set(None, args.image_size, synthetic_counts={
        "good": 1100, "short_fill": 755, "void": args.voids})
    os.makedirs(args.output_dir, exist_ok=True)
    print("| Γ | AUROC | AUROC short fill | AUROC void | AUPRC | TPR@1%FPR | pixel AUROC | "
          "F1 at threshold | s / image |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for steps in args.steps:
        config = SearchConfig(steps=steps, restarts=args.restarts,
                              learning_rate=args.learning_rate, seed=args.seed)
        search = LatentSearch(model.generator, model.features, config)
        held = scoring.run_search(search, result.heldout.images, 256)
        threshold = calibrate(held["anomaly_score"], 99.0, config, "held-out")["threshold"]
        begin = time.time()
        outputs = scoring.run_search(search, test.images, 256)
        seconds = (time.time() - begin) / len(test)
        e = metrics.evaluate(test.labels, outputs["anomaly_score"], test.defect_types, threshold,
                             outputs["anomaly_map"], test.masks, test.has_mask)
        per = e["auroc_per_defect_type"]
        print(f"| {steps} | {e['auroc']:.3f} | {per.get('short_fill', float('nan')):.3f} | "
              f"{per.get('void', float('nan')):.3f} | {e['auprc']:.3f} | "
              f"{e['tpr_at_fpr_1pct']:.3f} | {e['pixel_auroc']:.3f} | "
              f"{e['at_threshold']['f1']:.3f} | {seconds:.3f} |", flush=True)
        plots.score_histogram(outputs["anomaly_score"], test.defect_types,
                              os.path.join(args.output_dir, f"histogram_steps_{steps}.png"),
                              threshold, f"Synthetic ICs, Γ = {steps} (AUROC {e['auroc']:.3f})")
    print(f"figures in {args.output_dir}")


if __name__ == "__main__":
    main()
