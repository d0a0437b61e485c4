"""Scoring modes and image scores side by side: AUROC against time per image, at several Γ.

    python benchmarks/scoring_modes.py --protocol ic --base_filters 16 --epochs 30
    python benchmarks/scoring_modes.py --protocol fashion_mnist --classes 0 6 --test_limit 1000
    python benchmarks/scoring_modes.py --protocol fashion_mnist --classes 0 1 2 3 4 5 6 7 8 9 \\
        --base_filters 32 --epochs 10 --modes encoder     # the standard one-class protocol

For each mode (search: the study's random-start search; encoder: z = E(x);
encoder_search: the search started at E(x)) and each Γ, the mode is
calibrated on the held-out good images (thresholds and the good parts' map
statistics), then the test set is scored and timed. Prints, as Markdown,
AUROC and TPR at 1% FPR of every image score (study: A(x); map_max,
map_topk: from the standardised anomaly map) and seconds per image, all
measured in this one run; writes the figure AUROC against seconds per image
(log scale) and a JSON file into --output_dir.

Protocols:
  ic: the study's, on the built-in synthetic packages (train on 3277 good,
      10% held out; test 1100 good, 755 short fill and --others of each
      small defect type), with figures per defect type.
  fashion_mnist: one-class Fashion-MNIST (Debian's dataset-fashion-mnist,
      MIT licence): for each of --classes, train on that class, score the
      test split (or its first --test_limit images), the class normal and the
      other nine not; figures are per class and the mean over the classes.
      Published one-class AUROC, mean over the ten classes: GEOM 93.5, ARNet
      93.9; on MNIST, AnoGAN reaches 91.3.

Timing: the whole test set in batches of --batch_size after an untimed
warm-up (tracing excluded); the encoder mode, which takes milliseconds, is
timed --repeats times and the median kept.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import common

IMAGE_SCORES = ("study", "map_max", "map_topk")
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]


def _grid(args, model):
    steps = {"search": args.search_steps, "encoder": [0],
             "encoder_search": args.encoder_search_steps}
    return [(mode, s) for mode in args.modes if mode in model.scoring_modes
            for s in steps[mode]]


def _score_grid(model, heldout, test, args) -> dict:
    """{(mode, Γ): (evaluation, seconds per image)} for every point of the grid."""
    from ic_anogan.config import SearchConfig, search_config_for_mode
    results = {}
    for mode, steps in _grid(args, model):
        config = search_config_for_mode(mode, SearchConfig(learning_rate=args.learning_rate,
                                                           seed=args.seed), steps=steps)
        scorer, record = common.calibrated_scorer(model, heldout, config)
        outputs, seconds = common.median_seconds(
            lambda: scorer.score(test, args.batch_size),
            repeats=args.repeats if mode == "encoder" else 1,
            warm_up=lambda: scorer.score(test.subset(range(min(len(test), args.batch_size))),
                                         args.batch_size))
        results[(mode, steps)] = (common.evaluate(test, outputs, record), seconds / len(test))
        print(f"  {mode:15s} Γ={steps:<5d} {seconds / len(test):.5f} s/image", flush=True)
    return results


def _model(name, args, data_config):
    from ic_anogan.config import ModelConfig, TrainConfig
    model_dir = os.path.join(args.work_dir, name)
    result = common.train(
        model_dir, model_config=ModelConfig(args.image_size, args.latent_dim, args.base_filters),
        train_config=TrainConfig(batch_size=args.batch_size_train, epochs=args.epochs,
                                 seed=args.seed, monitor_every_epochs=0),
        data_config=data_config,
        encoder_epochs=args.encoder_epochs if set(args.modes) != {"search"} else None,
        seed=args.seed)
    print(f"{name}: GAN {result.gan.epochs_run} new epochs in {result.gan.seconds:.0f} s"
          + (f"; encoder {result.encoder.epochs_run} new epochs in {result.encoder.seconds:.0f} s"
             if result.encoder else ""), flush=True)
    return common.load(model_dir), result.gan.heldout


def run_ic(args) -> list:
    from ic_anogan.config import DataConfig
    model, heldout = _model("ic_model", args, DataConfig())
    test = common.synthetic_split(args.image_size, common.study_test_counts(args.others))
    rows = []
    for (mode, steps), (evaluation, seconds) in _score_grid(model, heldout, test, args).items():
        rows.append({"mode": mode, "steps": steps, "seconds_per_image": seconds,
                     **{name: {"auroc": evaluation["image_scores"][name]["auroc"],
                               "tpr_at_fpr_1pct": evaluation["image_scores"][name][
                                   "tpr_at_fpr_1pct"],
                               "per_type": common.per_type(evaluation, name)}
                        for name in IMAGE_SCORES}})
    return rows


def run_fashion_mnist(args) -> list:
    from ic_anogan.config import DataConfig
    if not os.path.isdir(args.data_dir):
        sys.exit(f"{args.data_dir}: not found; install Debian's dataset-fashion-mnist")
    per_point = {}
    for k in args.classes:
        spec = f"idx:{args.data_dir}:{k}"
        print(f"class {k} ({CLASS_NAMES[k]})", flush=True)
        model, heldout = _model(f"fashion_class_{k}", args, DataConfig(data_dir=spec))
        from ic_anogan.data import loading as data
        test = data.load_scoring_set(DataConfig(data_dir=spec), args.image_size)
        if args.test_limit:
            test = test.subset(range(min(args.test_limit, len(test))))
        for key, (evaluation, seconds) in _score_grid(model, heldout, test, args).items():
            per_point.setdefault(key, []).append((k, evaluation, seconds))
    rows = []
    for (mode, steps), values in per_point.items():
        row = {"mode": mode, "steps": steps,
               "seconds_per_image": statistics.mean(v[2] for v in values)}
        for name in IMAGE_SCORES:
            scores = [v[1]["image_scores"][name] for v in values]
            row[name] = {"auroc": statistics.mean(s["auroc"] for s in scores),
                         "tpr_at_fpr_1pct": statistics.mean(s["tpr_at_fpr_1pct"] for s in scores),
                         "per_class": {str(v[0]): s["auroc"] for v, s in zip(values, scores)}}
        rows.append(row)
    return rows


def _report(rows, args) -> None:
    from ic_anogan.reporting import plots
    ic = args.protocol == "ic"
    reference = next((r for r in rows if r["mode"] == "search" and r["steps"] == 500), None)
    print("\n| mode | Γ | " + " | ".join(f"{n} AUROC / TPR@1%FPR" for n in IMAGE_SCORES)
          + " | s / image | faster than search Γ=500 |")
    print("|---|---:|" + "---|" * len(IMAGE_SCORES) + "---:|---:|")
    for r in rows:
        speed = (f"{reference['seconds_per_image'] / r['seconds_per_image']:.1f}x"
                 if reference else "-")
        print(f"| {r['mode']} | {r['steps']} | " + " | ".join(
            f"{r[n]['auroc']:.3f} / {r[n]['tpr_at_fpr_1pct']:.3f}" for n in IMAGE_SCORES)
            + f" | {r['seconds_per_image']:.5f} | {speed} |")
    if ic:
        for name in ("study", args.image_score):
            print(f"\n{name}, per defect type: AUROC / TPR@1%FPR / pixel AUROC\n")
            types = [t for t in common.DEFECT_TYPES if t in rows[0][name]["per_type"]]
            print("| mode | Γ | " + " | ".join(types) + " |")
            print("|---|---:|" + "---|" * len(types))
            for r in rows:
                print(f"| {r['mode']} | {r['steps']} | "
                      + " | ".join(common.cell(r[name]["per_type"][t]) for t in types) + " |")
    else:
        print(f"\n{args.image_score} AUROC per class\n")
        print("| mode | Γ | " + " | ".join(f"{k} {CLASS_NAMES[k]}" for k in args.classes)
              + " | mean |")
        print("|---|---:|" + "---:|" * (len(args.classes) + 1))
        for r in rows:
            per = r[args.image_score]["per_class"]
            print(f"| {r['mode']} | {r['steps']} | "
                  + " | ".join(f"{100 * per[str(k)]:.1f}" for k in args.classes)
                  + f" | **{100 * r[args.image_score]['auroc']:.1f}** |")
    series = {}
    for r in rows:
        series.setdefault(r["mode"], []).append(
            (r["seconds_per_image"], r[args.image_score]["auroc"], r["steps"]))
    os.makedirs(args.output_dir, exist_ok=True)
    figure = plots.auroc_against_time(
        series, os.path.join(args.output_dir, f"auroc_vs_time_{args.protocol}.png"),
        title=("Synthetic ICs" if ic else f"Fashion-MNIST, classes {args.classes}")
        + f": {args.image_score} AUROC against time per image",
        reference=reference[args.image_score]["auroc"] if reference else None)
    results = os.path.join(args.output_dir, f"scoring_modes_{args.protocol}.json")
    with open(results, "w") as f:
        json.dump({"args": vars(args), "rows": rows}, f, indent=2)
    print(f"figure: {figure}\nresults: {results}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=["ic", "fashion_mnist"], default="ic")
    parser.add_argument("--image_size", type=int, default=None,
                        help="default 64 for ic, 32 for fashion_mnist")
    parser.add_argument("--latent_dim", type=int, default=100)
    parser.add_argument("--base_filters", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=30, help="GAN epochs")
    parser.add_argument("--encoder_epochs", type=int, default=20)
    parser.add_argument("--batch_size_train", type=int, default=64)
    parser.add_argument("--modes", nargs="+", default=["search", "encoder", "encoder_search"],
                        choices=["search", "encoder", "encoder_search"])
    parser.add_argument("--search_steps", type=int, nargs="+", default=[50, 100, 200, 500])
    parser.add_argument("--encoder_search_steps", type=int, nargs="+",
                        default=[5, 10, 25, 50, 100])
    parser.add_argument("--image_score", choices=IMAGE_SCORES, default="map_max",
                        help="the score of the figure and the per-type or per-class tables")
    parser.add_argument("--learning_rate", type=float, default=0.05, help="search step size")
    parser.add_argument("--batch_size", type=int, default=256, help="images per search call")
    parser.add_argument("--repeats", type=int, default=5, help="timing runs of the encoder mode")
    parser.add_argument("--others", type=int, default=200,
                        help="ic: void, chipped edge and scratch images each")
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 6])
    parser.add_argument("--test_limit", type=int, default=None,
                        help="fashion_mnist: score only the first N test images")
    parser.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", default="/tmp/ic_anogan_scoring_modes",
                        help="trained models are kept here and resumed by a rerun")
    parser.add_argument("--output_dir", default="/tmp/ic_anogan_scoring_modes/results")
    args = parser.parse_args()
    args.image_size = args.image_size or (64 if args.protocol == "ic" else 32)
    print(f"protocol {args.protocol}; image {args.image_size}, base_filters {args.base_filters}, "
          f"GAN {args.epochs} epochs, encoder {args.encoder_epochs} epochs; search lr "
          f"{args.learning_rate}", flush=True)
    _report(run_ic(args) if args.protocol == "ic" else run_fashion_mnist(args), args)


if __name__ == "__main__":
    main()
