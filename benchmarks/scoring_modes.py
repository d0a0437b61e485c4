"""Scoring modes side by side: AUROC against time per image, at several Γ.

    python benchmarks/scoring_modes.py --protocol ic --base_filters 16 --epochs 30
    python benchmarks/scoring_modes.py --protocol fashion_mnist --classes 0 6 --test_limit 1000

For each mode (search: the study's random-start search; encoder: z = E(x);
encoder_search: the search started at E(x)) and each Γ, scores the test set
and prints AUROC and seconds per image, measured in this one run, as a
Markdown table, then writes the figure AUROC vs seconds per image (log scale)
and a JSON file into --output_dir. Then it checks the targets of issue 6:
encoder at least 500x faster than search at Γ = 500; encoder_search within
0.005 AUROC of search's Γ = 500 with at most 1/10 of the steps.

Protocols:
  ic: the study's, on the built-in synthetic packages (train on 3277 good,
      10% held out; test 1100 good, 755 short fill and --voids voids).
  fashion_mnist: one-class Fashion-MNIST (Debian's dataset-fashion-mnist):
      for each of --classes, train on that class, score the first
      --test_limit test images, the class normal and the other nine not; the
      AUROC is the mean over the classes.

Timing: scoring the whole test set in batches of --batch_size after a
warm-up call (tracing excluded); the encoder mode, which takes milliseconds,
is timed --repeats times and the median kept.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _time_scoring(search, images, batch_size, repeats):
    from ic_anogan import scoring
    scoring.run_search(search, images[:batch_size], batch_size)  # traces the graph
    runs = []
    for _ in range(repeats):
        begin = time.perf_counter()
        outputs = scoring.run_search(search, images, batch_size)
        runs.append(time.perf_counter() - begin)
    return outputs, statistics.median(runs)


def _grid(args):
    return ([("search", s) for s in args.search_steps] + [("encoder", 0)]
            + [("encoder_search", s) for s in args.encoder_search_steps])


def _score_all(model, test, args, base_config):
    """{(mode, Γ): (outputs, seconds)} for every point of the grid."""
    from ic_anogan import scoring
    from ic_anogan.config import search_config_for_mode
    results = {}
    for mode, steps in _grid(args):
        config = search_config_for_mode(mode, base_config, steps=steps)
        search = scoring.make_search(model, config)
        outputs, seconds = _time_scoring(search, test.images, args.batch_size,
                                         args.repeats if mode == "encoder" else 1)
        results[(mode, steps)] = (outputs, seconds)
        print(f"  {mode:15s} Γ={steps:<5d} {seconds / len(test):.5f} s/image", flush=True)
    return results


def _train(model_dir, log_dir, args, data_spec=None):
    from ic_anogan import encoder_train, train
    from ic_anogan.config import EncoderConfig, ModelConfig, TrainConfig
    begin = time.time()
    result = train.train(model_dir=model_dir, log_dir=log_dir,
                         model_config=ModelConfig(args.image_size, args.latent_dim,
                                                  args.base_filters),
                         train_config=TrainConfig(batch_size=args.batch_size_train,
                                                  epochs=args.epochs, seed=args.seed,
                                                  monitor_every_epochs=0),
                         data_spec=data_spec, verbose=0)
    gan_seconds = time.time() - begin
    encoded = encoder_train.train_encoder(
        model_dir=model_dir, log_dir=log_dir,
        encoder_config=EncoderConfig(epochs=args.encoder_epochs, seed=args.seed,
                                     feature_weight=args.feature_weight,
                                     batch_size=args.batch_size_train),
        train_set=result.train_set, heldout=result.heldout, verbose=0)
    print(f"GAN: {result.epochs_run} new epochs in {gan_seconds:.0f} s; encoder: "
          f"{encoded.epochs_run} new epochs in {encoded.seconds:.0f} s; last encoder epoch "
          + ", ".join(f"{k}={v[-1]:.4f}" for k, v in sorted(encoded.history.items())),
          flush=True)
    return train.load_trained_model(model_dir)


def run_ic(args, base_config):
    from ic_anogan import data, metrics
    model = _train(os.path.join(args.work_dir, "ic_model"), os.path.join(args.work_dir, "logs"),
                   args)
    test = data.load_scoring_set(None, args.image_size, synthetic_counts={
        "good": 1100, "short_fill": 755, "void": args.voids})
    rows = []
    for (mode, steps), (outputs, seconds) in _score_all(model, test, args, base_config).items():
        e = metrics.evaluate(test.labels, outputs["anomaly_score"], test.defect_types, None,
                             outputs["anomaly_map"], test.masks, test.has_mask)
        per = e["auroc_per_defect_type"]
        rows.append({"mode": mode, "steps": steps, "auroc": e["auroc"],
                     "auroc_short_fill": per.get("short_fill"), "auroc_void": per.get("void"),
                     "pixel_auroc": e.get("pixel_auroc"), "seconds_per_image": seconds / len(test),
                     "images": len(test)})
    return rows


def run_fashion_mnist(args, base_config):
    from ic_anogan import data, metrics
    if not os.path.isdir(args.data_dir):
        sys.exit(f"{args.data_dir}: not found; install Debian's dataset-fashion-mnist")
    per_class = {}
    for k in args.classes:
        spec = f"idx:{args.data_dir}:{k}"
        print(f"class {k}", flush=True)
        model = _train(os.path.join(args.work_dir, f"fashion_class_{k}"),
                       os.path.join(args.work_dir, "logs", f"class_{k}"), args, data_spec=spec)
        test = data.load_scoring_set(spec, args.image_size)
        test = test.subset(range(min(args.test_limit, len(test))))
        for key, (outputs, seconds) in _score_all(model, test, args, base_config).items():
            per_class.setdefault(key, []).append(
                (metrics.auroc(test.labels, outputs["anomaly_score"]), seconds / len(test)))
    rows = []
    for (mode, steps), values in per_class.items():
        rows.append({"mode": mode, "steps": steps,
                     "auroc": statistics.mean(v[0] for v in values),
                     "auroc_per_class": {str(k): v[0] for k, v in zip(args.classes, values)},
                     "seconds_per_image": statistics.mean(v[1] for v in values)})
    return rows


def _report(rows, args):
    from ic_anogan import plots
    search_500 = next((r for r in rows if r["mode"] == "search" and r["steps"] == 500), None)
    reference_seconds = search_500["seconds_per_image"] if search_500 else None
    ic = args.protocol == "ic"
    header = "| mode | Γ | AUROC |" + (" short fill | void |" if ic else "") + \
        " s / image | images / s | faster than search Γ=500 |"
    print("\n" + header)
    print("|" + "|".join(["---"] + ["---:"] * (header.count("|") - 2)) + "|")
    for r in rows:
        speed = (f"{reference_seconds / r['seconds_per_image']:.1f}x"
                 if reference_seconds else "-")
        extra = f" {r['auroc_short_fill']:.3f} | {r['auroc_void']:.3f} |" if ic else ""
        print(f"| {r['mode']} | {r['steps']} | {r['auroc']:.3f} |{extra} "
              f"{r['seconds_per_image']:.5f} | {1 / r['seconds_per_image']:.1f} | {speed} |")
    if search_500:
        encoder = next(r for r in rows if r["mode"] == "encoder")
        ratio = search_500["seconds_per_image"] / encoder["seconds_per_image"]
        print(f"\ntarget 1: encoder is {ratio:.0f}x faster than search at Γ = 500 "
              f"(target >= 500x): {'met' if ratio >= 500 else 'NOT met'}")
        close = [r for r in rows if r["mode"] == "encoder_search"
                 and r["auroc"] >= search_500["auroc"] - 0.005]
        fewest = min(close, key=lambda r: r["steps"]) if close else None
        if fewest:
            print(f"target 2: encoder_search reaches search Γ=500's AUROC "
                  f"{search_500['auroc']:.3f} within 0.005 at Γ = {fewest['steps']} "
                  f"({fewest['auroc']:.3f}; target Γ <= 50): "
                  f"{'met' if fewest['steps'] <= 50 else 'NOT met'}")
        else:
            best = max((r for r in rows if r["mode"] == "encoder_search"),
                       key=lambda r: r["auroc"])
            print(f"target 2: NOT met; encoder_search's best AUROC is {best['auroc']:.3f} "
                  f"(Γ = {best['steps']}) against search Γ=500's {search_500['auroc']:.3f}")
    series = {}
    for r in rows:
        series.setdefault(r["mode"], []).append((r["seconds_per_image"], r["auroc"], r["steps"]))
    os.makedirs(args.output_dir, exist_ok=True)
    figure = plots.auroc_against_time(
        series, os.path.join(args.output_dir, f"auroc_vs_time_{args.protocol}.png"),
        title=("Synthetic ICs" if ic else f"Fashion-MNIST, classes {args.classes}")
        + ": AUROC against time per image", reference=search_500["auroc"] if search_500 else None)
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
    parser.add_argument("--feature_weight", type=float, default=1.0, help="κ of the encoder")
    parser.add_argument("--batch_size_train", type=int, default=64)
    parser.add_argument("--search_steps", type=int, nargs="+", default=[50, 100, 200, 500])
    parser.add_argument("--encoder_search_steps", type=int, nargs="+",
                        default=[5, 10, 25, 50, 100])
    parser.add_argument("--learning_rate", type=float, default=0.05, help="search step size")
    parser.add_argument("--batch_size", type=int, default=256, help="images per search call")
    parser.add_argument("--repeats", type=int, default=5, help="timing runs of the encoder mode")
    parser.add_argument("--voids", type=int, default=200)
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 6])
    parser.add_argument("--test_limit", type=int, default=1000)
    parser.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", default="/tmp/ic_anogan_scoring_modes",
                        help="trained models are kept here and reused by a rerun")
    parser.add_argument("--output_dir", default="/tmp/ic_anogan_scoring_modes/results")
    args = parser.parse_args()
    args.image_size = args.image_size or (64 if args.protocol == "ic" else 32)

    from ic_anogan.config import SearchConfig
    base = SearchConfig(learning_rate=args.learning_rate, seed=args.seed)
    print(f"protocol {args.protocol}; image {args.image_size}, base_filters "
          f"{args.base_filters}, GAN {args.epochs} epochs, encoder {args.encoder_epochs} epochs "
          f"(κ = {args.feature_weight}); search lr {args.learning_rate}", flush=True)
    rows = run_ic(args, base) if args.protocol == "ic" else run_fashion_mnist(args, base)
    _report(rows, args)


if __name__ == "__main__":
    main()
