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

import common


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
                        help="resumed if it holds a run with the same settings")
    parser.add_argument("--output_dir", default="/tmp/ic_anogan_ic_synthetic/results")
    args = parser.parse_args()

    from ic_anogan.config import ModelConfig, SearchConfig, TrainConfig
    from ic_anogan.reporting import plots

    result = common.train(
        args.model_dir, model_config=ModelConfig(args.image_size, 100, args.base_filters),
        train_config=TrainConfig(epochs=args.epochs, seed=args.seed, monitor_every_epochs=0),
        encoder_epochs=None)
    print(f"trained {result.gan.epochs_run} epochs in {result.gan.seconds:.0f} s "
          f"(base_filters {args.base_filters}, image {args.image_size})", flush=True)
    model = common.load(args.model_dir)
    counts = common.study_test_counts()
    counts["void"] = args.voids
    test = common.synthetic_split(args.image_size, counts)
    os.makedirs(args.output_dir, exist_ok=True)
    print("| Γ | AUROC | AUROC short fill | AUROC void | AUPRC | TPR@1%FPR | pixel AUROC | "
          "F1 at threshold | s / image |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for steps in args.steps:
        config = SearchConfig(steps=steps, restarts=args.restarts,
                              learning_rate=args.learning_rate, seed=args.seed)
        scorer, record = common.calibrated_scorer(model, result.gan.heldout, config,
                                                  map_config=None)
        outputs, seconds = common.median_seconds(lambda: scorer.score(test, 256),
                                                 warm_up=lambda: scorer.score(
                                                     test.subset(range(8)), 8))
        e = common.evaluate(test, outputs, record, "study")
        per = e["auroc_per_defect_type"]
        print(f"| {steps} | {e['auroc']:.3f} | {per.get('short_fill', float('nan')):.3f} | "
              f"{per.get('void', float('nan')):.3f} | {e['auprc']:.3f} | "
              f"{e['tpr_at_fpr_1pct']:.3f} | {e['pixel_auroc']:.3f} | "
              f"{e['at_threshold']['f1']:.3f} | {seconds / len(test):.3f} |", flush=True)
        plots.score_histogram(outputs.anomaly_score, test.defect_types,
                              os.path.join(args.output_dir, f"histogram_steps_{steps}.png"),
                              e["at_threshold"]["threshold"],
                              f"Synthetic ICs, Γ = {steps} (AUROC {e['auroc']:.3f})")
    print(f"figures in {args.output_dir}")


if __name__ == "__main__":
    main()
