"""How each training technique changes reconstruction and detection, per defect type.

    # one variant: train, train the encoder, calibrate, score both splits, append a JSON line
    python benchmarks/generator_quality.py --variant study --base_filters 16 --epochs 30 \
        --results /tmp/gq/demo.jsonl
    # the table of every line in a results file
    python benchmarks/generator_quality.py --table /tmp/gq/demo.jsonl

Variants (train settings; everything else is the library's default):
  study     the study's DCGAN: no average, no penalty, no augmentation, last epoch
  ema       study + the moving average of G's weights (ema_decay 0.999)
  r1        study + the R1 penalty on D (r1_gamma)
  augment   study + DiffAugment
  keep_best study + keeping the epoch with the lowest held-out reconstruction error
  ema_keep_best, ema_r1   pairs
  default   the library's defaults (augmentation chosen from the data size)
  all       every technique on, augmentation included

Each run trains on the built-in synthetic packages (--train_count good
images, 10% of them held out), then scores in the default mode
(encoder_search, Γ = 50) decided by the default image score (map_max), on
the validation split (300 good, 200 of each defect type; for choosing
settings) and on the test split (1100 good, 755 short fill, 200 each of
void, chipped edge and scratch; for reporting only). It records the
held-out good images' reconstruction error mean |x − G(z)| after that
search, per-type AUROC, TPR at 1% FPR and pixel AUROC, and the times.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

import common

DEFECTS = common.DEFECT_TYPES
VARIANTS = ("study", "ema", "r1", "augment", "keep_best", "ema_keep_best", "ema_r1",
            "default", "all")
SPLITS = {"validation": common.study_test_counts(200, good=300, short_fill=200),
          "test": common.study_test_counts(200)}


def train_config_for(variant: str, args):
    from ic_anogan.config import TrainConfig
    length = {"epochs": args.epochs} if args.epochs else {"updates": args.updates}
    default = TrainConfig(**length, r1_gamma=args.r1_gamma)
    study = default.as_study_dcgan()
    return {"study": study,
            "ema": dataclasses.replace(study, ema_decay=default.ema_decay),
            "r1": dataclasses.replace(study, d_penalty="r1"),
            "augment": dataclasses.replace(study, augment=True),
            "keep_best": dataclasses.replace(study, keep_best=True),
            "ema_keep_best": dataclasses.replace(study, ema_decay=default.ema_decay,
                                                 keep_best=True),
            "ema_r1": dataclasses.replace(study, ema_decay=default.ema_decay, d_penalty="r1"),
            "default": default,
            "all": dataclasses.replace(default, augment=True)}[variant]


def run(args) -> dict:
    import numpy as np

    from ic_anogan.config import DataConfig, ModelConfig, SearchConfig, search_config_for_mode

    model_dir = os.path.join(args.work_dir, f"{args.tag}_{args.variant}")
    if os.path.exists(model_dir):
        import shutil
        shutil.rmtree(model_dir)
    train_config = train_config_for(args.variant, args)
    result = common.train(model_dir, model_config=ModelConfig(64, 100, args.base_filters or None),
                          train_config=train_config,
                          data_config=DataConfig(synthetic_train_count=args.train_count),
                          encoder_epochs=args.encoder_epochs)
    model = common.load(model_dir)
    search_config = search_config_for_mode("encoder_search", SearchConfig())
    (scorer, record), calibration_seconds = common.median_seconds(
        lambda: common.calibrated_scorer(model, result.gan.heldout, search_config),
        warm_up=lambda: None)
    heldout_outputs = scorer.score(result.gan.heldout, 256)
    row = {"variant": args.variant, "tag": args.tag,
           "base_filters": model.model_config.base_filters,
           "train_images": result.gan.train_images, "plan": dataclasses.asdict(result.gan.plan),
           "train_config": dataclasses.asdict(train_config), "kept_epoch": result.gan.kept_epoch,
           "heldout_reconstruction_error": float(np.mean(heldout_outputs.anomaly_map)),
           "gan_seconds": result.gan.seconds, "encoder_seconds": result.encoder.seconds,
           "calibration_seconds": calibration_seconds}
    for split, counts in SPLITS.items():
        images = common.synthetic_split(64, counts, split=split)
        evaluation = common.evaluate(images, scorer.score(images, 256), record)
        chosen = evaluation["image_scores"]["map_max"]
        row[split] = {"auroc": chosen["auroc_per_defect_type"],
                      "tpr_at_fpr_1pct": chosen["tpr_at_fpr_1pct_per_defect_type"],
                      "pixel_auroc": evaluation["pixel_auroc_standardised_per_defect_type"],
                      "auroc_all": chosen["auroc"], "tpr_all": chosen["tpr_at_fpr_1pct"]}
    return row


def print_table(path: str) -> None:
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for split in ("validation", "test"):
        print(f"\n{split} split; AUROC / TPR at 1% FPR / pixel AUROC per defect type "
              "(encoder_search Γ = 50, map_max)\n")
        print("| run | variant | filters | train images | updates | kept epoch / epochs | "
              "held-out \\|x − G(z)\\| | " + " | ".join(DEFECTS) + " | GAN s | encoder s |")
        print("|---|---|---:|---:|---:|---:|---:|" + "---|" * len(DEFECTS) + "---:|---:|")
        for r in rows:
            m = r[split]
            print(f"| {r['tag']} | {r['variant']} | {r['base_filters']} | {r['train_images']} | "
                  f"{r['plan']['epochs'] * r['plan']['updates_per_epoch']} | "
                  f"{r['kept_epoch']} / {r['plan']['epochs']} | "
                  f"{r['heldout_reconstruction_error']:.4f} | "
                  + " | ".join(f"{m['auroc'][d]:.3f} / {m['tpr_at_fpr_1pct'][d]:.3f} / "
                               f"{m['pixel_auroc'].get(d, float('nan')):.3f}" for d in DEFECTS)
                  + f" | {r['gan_seconds']:.0f} | {r['encoder_seconds']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--tag", default="demo", help="names the run in the table")
    parser.add_argument("--base_filters", type=int, default=16,
                        help="0: the library's choice from the data size")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--updates", type=int, default=None)
    parser.add_argument("--r1_gamma", type=float, default=0.1)
    parser.add_argument("--train_count", type=int, default=3277,
                        help="good images rendered; 10%% are held out")
    parser.add_argument("--encoder_epochs", type=int, default=20)
    parser.add_argument("--work_dir", default="/tmp/ic_anogan_generator_quality")
    parser.add_argument("--results", default=None, help="append the run as a JSON line here")
    parser.add_argument("--table", default=None, help="print the table of a results file")
    args = parser.parse_args()
    if args.table:
        print_table(args.table)
        return
    if not args.variant or not args.results:
        parser.error("--variant and --results are needed to run (or --table to print)")
    row = run(args)
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    with open(args.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: row[k] for k in ("variant", "kept_epoch", "heldout_reconstruction_error",
                                          "gan_seconds")}), flush=True)
    print_table(args.results)


if __name__ == "__main__":
    main()
