"""Scores images with a trained AnoGAN model and writes scores, metrics and figures.

    python score_main.py --model_dir=models/line3 --data_dir=/path/to/test --output_dir=out

Without --data_dir it scores the built-in synthetic test split (1100 good and
755 short-fill packages, as in the study). Writes scores.csv, metrics.json
(when labels are known), the score histogram, ROC/PR curves and
reconstruction grids to --output_dir, and the same to TensorBoard.
"""

import dataclasses
import logging
import os
import time

from absl import app, flags

# absl.logging's --log_dir (for log files, never written here) is taken over
# for the TensorBoard directory.
if "log_dir" in flags.FLAGS:
    delattr(flags.FLAGS, "log_dir")

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "A model directory written by train_main.py.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Images to score: a folder (recursive), an MVTec-style root or test/ "
    "folder (labels from folder names), or idx:FOLDER:CLASS. Default: the synthetic test split.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Where results go; default <model_dir>/scores.")
_LOG_DIR = flags.DEFINE_string("log_dir", None,
                               "TensorBoard directory; default tensorboard_logs/<model name>.")
_SEARCH_STEPS = flags.DEFINE_integer("search_steps", None,
                                     "Γ; default: the setting the threshold was calibrated with.")
_DISCRIMINATION_WEIGHT = flags.DEFINE_float("discrimination_weight", None, "λ; default: as calibrated.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", None,
                                    "Adam step size on z; default: as calibrated.")
_RESTARTS = flags.DEFINE_integer("restarts", None, "Random starts per image; default: as calibrated.")
_CLIP_Z = flags.DEFINE_float("clip_z", None, "Clip z to [-clip_z, clip_z]; default: as calibrated.")
_SEED = flags.DEFINE_integer("seed", None, "Seed of the starting points; default: as calibrated.")
_JIT = flags.DEFINE_bool("jit_compile", False, "Compile the search with XLA.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per search call.")
_CHUNK_STEPS = flags.DEFINE_integer("chunk_steps", None,
                                    "Steps per graph call (progress, Ctrl-C); default Γ/20.")
_THRESHOLD = flags.DEFINE_string("threshold", None,
                                 "Decision threshold; default: the calibrated one.")
_CALIBRATE_DIR = flags.DEFINE_string(
    "calibrate_dir", None, "Recalibrate the threshold on this folder of good images first "
    "(never defect images); the new threshold is stored in --model_dir.")
_PERCENTILE = flags.DEFINE_float("calibration_percentile", 99.0,
                                 "With --calibrate_dir: threshold = this percentile.")
_SKIP_CORRUPT = flags.DEFINE_bool("skip_corrupt", False,
                                  "Skip unreadable image files (and count them) instead of failing.")
_SYNTHETIC_SPLIT = flags.DEFINE_enum(
    "synthetic_split", "test", ["test", "validation"],
    "Synthetic split to score when --data_dir is unset; tune settings on 'validation'.")
_SYNTHETIC_PACKAGE = flags.DEFINE_enum(
    "synthetic_package", None, ["sop", "qfp", "mixed"],
    "Synthetic package type when --data_dir is unset; default: the one the model was trained on.")
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None, "Export a SavedModel with the search built in (for TF Serving) to "
    "EXPORT_DIR/<next version>/ using the search settings and threshold in force, then exit.")
_SAVED_MODEL = flags.DEFINE_string(
    "saved_model", None, "Score with an exported SavedModel (EXPORT_DIR/<version>) instead of "
    "the Python search; its baked-in settings and threshold apply.")
_SYNTHETIC_COUNTS = flags.DEFINE_string(
    "synthetic_counts", "good:1100,short_fill:755",
    "Synthetic test split when --data_dir is unset: type:count,... "
    "(types: good, short_fill, void, chipped_edge, scratch).")

flags.register_multi_flags_validator(
    ["model_dir", "saved_model"], lambda v: bool(v["model_dir"] or v["saved_model"]),
    message="--model_dir (or --saved_model) is required")
for _flag in ("restarts", "chunk_steps"):
    flags.register_validator(_flag, lambda v: v is None or v > 0,
                             message="must be a positive integer")
flags.register_validator("batch_size", lambda v: v > 0, message="must be a positive integer")
flags.register_validator("search_steps", lambda v: v is None or v >= 0,
                         message="must be an integer >= 0")
flags.register_validator("discrimination_weight", lambda v: v is None or 0 <= v <= 1,
                         message="must be in [0, 1]")
flags.register_validator("learning_rate", lambda v: v is None or v > 0, message="must be positive")
flags.register_validator("clip_z", lambda v: v is None or v > 0, message="must be positive")
flags.register_validator("calibration_percentile", lambda v: 0 < v <= 100,
                         message="must be in (0, 100]")


def _parse_threshold(text):
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise app.UsageError(f"--threshold={text!r}: expected a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise app.UsageError(f"--threshold={text!r}: expected a finite number")
    return value


def _parse_counts(text):
    counts = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, number = item.partition(":")
        if not number.strip().isdigit():
            raise app.UsageError(f"--synthetic_counts: {item!r} is not type:count")
        counts[name.strip()] = int(number)
    return counts


def _search_settings(record):
    """The search in force: as calibrated, unless a flag says otherwise."""
    from ic_anogan import calibration, config
    base = calibration.stored_search_config(record) if record else config.SearchConfig()
    overrides = {"steps": _SEARCH_STEPS.value, "discrimination_weight": _DISCRIMINATION_WEIGHT.value,
                 "learning_rate": _LEARNING_RATE.value, "restarts": _RESTARTS.value,
                 "clip_z": _CLIP_Z.value, "seed": _SEED.value}
    return dataclasses.replace(base, jit_compile=_JIT.value,
                               **{k: v for k, v in overrides.items() if v is not None})


def _print_summary(report, log_dir):
    evaluation = report.evaluation
    if "auroc" in evaluation:
        print(f"AUROC {evaluation['auroc']:.4f}  AUPRC {evaluation['auprc']:.4f}  "
              f"TPR@1%FPR {evaluation['tpr_at_fpr_1pct']:.4f}"
              + (f"  pixel AUROC {evaluation['pixel_auroc']:.4f}"
                 if "pixel_auroc" in evaluation else ""))
    if "at_threshold" in evaluation:
        t = evaluation["at_threshold"]
        print(f"at threshold {t['threshold']:.4f}: precision {t['precision']:.4f} "
              f"recall {t['recall']:.4f} F1 {t['f1']:.4f} FPR {t['false_positive_rate']:.4f}")
    print(f"scores: {report.scores_csv}")
    print(f"figures: {', '.join(report.figures)}")
    if log_dir:
        print(f"TensorBoard: tensorboard --logdir {log_dir}")


def main(argv):
    del argv
    threshold_override = _parse_threshold(_THRESHOLD.value)
    synthetic_counts = _parse_counts(_SYNTHETIC_COUNTS.value)
    from ic_anogan import calibration, cli, config, data, export, scoring, serving, train
    from ic_anogan.search import LatentSearch
    cli.setup_logging()
    log = logging.getLogger("score_main")
    model_dir = _MODEL_DIR.value
    name_for_logs = model_dir or os.path.dirname(os.path.normpath(_SAVED_MODEL.value))

    model = record = served = None
    try:
        if _SAVED_MODEL.value:
            served = serving.ExportedModel(_SAVED_MODEL.value)
            image_size = served.image_size
            if any(f.present for f in (_SEARCH_STEPS, _DISCRIMINATION_WEIGHT, _LEARNING_RATE,
                                       _RESTARTS, _CLIP_Z, _SEED, _CALIBRATE_DIR, _EXPORT_DIR)):
                raise app.UsageError("--saved_model scores with the export's baked-in settings; "
                                     "search, calibration and export flags do not apply")
        else:
            model = train.load_trained_model(model_dir)
            record = calibration.read(model_dir)
            image_size = model.model_config.image_size
    except (train.ModelDirError, calibration.CalibrationError, export.ExportError,
            FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1

    search_config = _search_settings(record) if model else None
    trained_on = (model.metadata.get("data", {}) if model else {}).get("synthetic_package")
    package = _SYNTHETIC_PACKAGE.value or trained_on or "sop"
    try:
        if _CALIBRATE_DIR.value:
            good = data.load_training_set(_CALIBRATE_DIR.value, image_size, _SKIP_CORRUPT.value)
            log.info("recalibrating on %s", data.describe(good))
            record = scoring.calibrate(
                model, good, search_config, _PERCENTILE.value, _BATCH_SIZE.value,
                source=_CALIBRATE_DIR.value,
                progress=cli.StepProgress(len(good) * search_config.steps, "calibration"),
                chunk_steps=_CHUNK_STEPS.value or max(1, search_config.steps // 20))
        if not _EXPORT_DIR.value:
            images = data.load_scoring_set(_DATA_DIR.value, image_size, _SKIP_CORRUPT.value,
                                           synthetic_counts=synthetic_counts,
                                           synthetic_split=_SYNTHETIC_SPLIT.value,
                                           synthetic_package=package)
    except (data.DataError, calibration.CalibrationError, ValueError) as e:
        log.error("%s", e)
        return 1

    if served:
        threshold = served.threshold if threshold_override is None else threshold_override
    else:
        threshold = threshold_override
        if threshold is None and record:
            threshold = record["threshold"]
            changed = calibration.mismatched_settings(record, search_config)
            if changed:
                log.warning("the stored threshold was calibrated with other search settings "
                            "(%s); its false-reject rate does not hold. Recalibrate with "
                            "--calibrate_dir or give --threshold.", ", ".join(changed))
        elif threshold is None:
            log.warning("%s has no calibration.json: no threshold, is_anomaly left empty",
                        model_dir)

    if _EXPORT_DIR.value:
        try:
            path = export.export_saved_model(model, _EXPORT_DIR.value, search_config, threshold)
        except (export.ExportError, OSError) as e:
            log.error("%s", e)
            return 1
        print(f"exported SavedModel to {path} (signatures: {', '.join(export.SIGNATURES)}; "
              f"{search_config.steps} steps, threshold {threshold})")
        return 0

    steps = served.settings["search"]["steps"] if served else search_config.steps
    log.info("scoring %s", data.describe(images))
    log.info("search %s", served.settings["search"] if served else config.to_dict(search_config))
    progress = cli.StepProgress(len(images) * steps, "search")
    start = time.time()
    try:
        if served:
            outputs = served.score(images, _BATCH_SIZE.value, progress)
        else:
            search = LatentSearch(model.generator, model.features, search_config)
            outputs = scoring.run_search(search, images.images, _BATCH_SIZE.value,
                                         _CHUNK_STEPS.value or max(1, steps // 20), progress)
    except KeyboardInterrupt:
        log.error("interrupted: nothing was written")
        return 130
    seconds = time.time() - start
    rate = len(images) * steps / max(seconds, 1e-9)
    output_dir = _OUTPUT_DIR.value or os.path.join(model_dir or _SAVED_MODEL.value, "scores")
    log_dir = _LOG_DIR.value or cli.default_log_dir(name_for_logs)
    report = scoring.write_report(
        output_dir, images, outputs, threshold, log_dir=log_dir, extra={
            "search": served.settings["search"] if served else config.to_dict(search_config),
            "threshold": threshold, "search_seconds": seconds, "img_steps_per_s": rate,
            "model": os.path.abspath(_SAVED_MODEL.value or model_dir),
            "data": _DATA_DIR.value or "synthetic"})
    log.info("scored %d images in %.1f s (%.0f img·steps/s)", len(images), seconds, rate)
    _print_summary(report, log_dir)
    return 0


if __name__ == "__main__":
    app.run(main)
