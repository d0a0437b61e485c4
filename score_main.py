"""Scores images with a trained AnoGAN model and writes scores, metrics and figures.

    python score_main.py --model_dir=models/line3 --data_dir=/path/to/test --output_dir=out

Without --data_dir it scores the built-in synthetic test split (1100 good and
755 short-fill packages, as in the study). Writes scores.csv, metrics.json
(when labels are known), the score histogram, ROC/PR curves and
reconstruction grids to --output_dir, and the same to TensorBoard.

--mode picks how z is found: search (the study's), encoder (z = E(x), one
forward pass) or encoder_search (the search started at E(x), the default
when the model has an encoder); a list such as
--mode=search,encoder or --mode=all scores with each, into
--output_dir/<mode>/, and prints a table comparing them.

--image_score picks what decides: map_max (the default when the model has
good-part map statistics: the maximum of the anomaly map standardised per
pixel by good parts), map_topk, or study (the study's A(x)). Every score the
model supports is reported side by side in metrics.json and the table.
"""

import logging
import math
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
_MODE = flags.DEFINE_list(
    "mode", None, "Scoring mode(s): search, encoder, encoder_search, or all (every mode "
    "the model supports). Default: encoder_search when the model has an encoder, else search; "
    "with --saved_model, the export's default mode. With --export_dir the first mode listed "
    "is served by serving_default.")
_SEARCH_STEPS = flags.DEFINE_integer(
    "search_steps", None, "Γ of the searching modes; default: each mode's calibrated setting.")
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
_IMAGE_SCORE = flags.DEFINE_enum(
    "image_score", None, ["study", "map_max", "map_topk"],
    "What decides is_anomaly: study (A(x), the residual summed over the image), map_max "
    "(maximum of the anomaly map standardised by good parts) or map_topk (mean of its top "
    "pixels). Default: map_max when the model has map statistics, else study; with "
    "--saved_model, the export's.")
# Map statistics are computed at calibration; these apply with --calibrate_dir.
_MAP_RESIDUAL = flags.DEFINE_enum("map_residual", None, ["absolute", "signed"],
                                  "With --calibrate_dir: residual the map statistics use; "
                                  "default: as stored, else absolute.")
_MAP_KERNEL = flags.DEFINE_enum("map_kernel", None, ["box", "gaussian"],
                                "With --calibrate_dir: map smoothing kernel; default: as "
                                "stored, else gaussian.")
_MAP_KERNEL_SIZE = flags.DEFINE_integer("map_kernel_size", None,
                                        "With --calibrate_dir: odd smoothing kernel size (1: "
                                        "none); default: as stored, else 3.")
_PIXEL_PERCENTILE = flags.DEFINE_float(
    "pixel_percentile", None, "With --calibrate_dir: defect-mask threshold = this percentile "
    "of good images' standardised pixels; default: as stored, else 99.9.")
_SYNTHETIC_COUNTS = flags.DEFINE_string(
    "synthetic_counts", "good:1100,short_fill:755",
    "Synthetic test split when --data_dir is unset: type:count,... "
    "(types: good, short_fill, void, chipped_edge, scratch).")

_MAX_IMAGE_PIXELS = flags.DEFINE_integer(
    "max_image_pixels", 100_000_000, "Image files above this many pixels (width x height) are "
    "refused, or skipped with --skip_corrupt, before they are decoded.")

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
# inf and nan pass a "> 0" test: every float flag must be finite.
flags.register_validator("learning_rate", lambda v: v is None or (math.isfinite(v) and v > 0),
                         message="must be a finite positive number")
flags.register_validator("clip_z", lambda v: v is None or (math.isfinite(v) and v > 0),
                         message="must be a finite positive number")
flags.register_validator("pixel_percentile", lambda v: v is None or 0 < v <= 100,
                         message="must be in (0, 100]")
flags.register_validator("max_image_pixels", lambda v: v > 0,
                         message="must be a positive integer")
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


def _modes(supported, requested):
    """The modes to run, in order; 'all' means every supported mode."""
    modes = []
    for mode in requested or []:
        for name in supported if mode == "all" else [mode]:
            if name not in modes:
                modes.append(name)
    return modes


def _search_settings(mode, records):
    """The search in force for `mode`: as calibrated, unless a flag says otherwise.

    Without a calibration of this mode, the search mode's calibrated settings
    (λ, learning rate, seed, ...) are taken with the mode's default Γ.
    """
    from ic_anogan import calibration, config
    if mode in records:
        base = calibration.stored_search_config(records[mode])
    else:
        base = config.search_config_for_mode(
            mode, calibration.stored_search_config(records["search"])
            if "search" in records else None)
    values = config.to_dict(base)
    overrides = {"steps": _SEARCH_STEPS.value, "discrimination_weight": _DISCRIMINATION_WEIGHT.value,
                 "learning_rate": _LEARNING_RATE.value, "restarts": _RESTARTS.value,
                 "clip_z": _CLIP_Z.value, "seed": _SEED.value}
    values.update({k: v for k, v in overrides.items() if v is not None})
    values.update(mode=mode, jit_compile=_JIT.value)
    if mode == "encoder":  # no search: Γ and restarts do not apply
        values.update(steps=0, restarts=1)
    return config.SearchConfig(**values)


def _map_config(records, modes):
    """The map settings for a recalibration: flags, else the stored ones, else defaults."""
    from ic_anogan import calibration, config
    stored = next((calibration.map_statistics(records[m]) for m in modes
                   if m in records and "map" in records[m]), None)
    values = config.to_dict(stored.config if stored else config.MapConfig())
    overrides = {"residual": _MAP_RESIDUAL.value, "kernel": _MAP_KERNEL.value,
                 "kernel_size": _MAP_KERNEL_SIZE.value,
                 "pixel_percentile": _PIXEL_PERCENTILE.value}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return config.MapConfig(**values)
    except config.ConfigError as e:
        raise app.UsageError(f"--{e}") from None


def _print_summary(report, log_dir):
    evaluation = report.evaluation
    for name, e in evaluation.get("image_scores", {}).items():
        if "auroc" in e:
            per_type = ", ".join(f"{t} {v:.4f}" for t, v in e["auroc_per_defect_type"].items())
            print(f"{name:9s} AUROC {e['auroc']:.4f}  AUPRC {e['auprc']:.4f}  "
                  f"TPR@1%FPR {e['tpr_at_fpr_1pct']:.4f}  per type: {per_type}"
                  + ("  (decides)" if name == evaluation["image_score"] else ""))
    pixel = [f"{label} {evaluation[key]:.4f}" for key, label in (
        ("pixel_auroc", "pixel AUROC |x-G(z)|"), ("pixel_auroc_standardised",
                                                  "pixel AUROC standardised"), ("pro", "PRO"))
        if key in evaluation]
    if pixel:
        print("  ".join(pixel))
    if "at_threshold" in evaluation:
        t = evaluation["at_threshold"]
        print(f"at threshold {t['threshold']:.4f}: precision {t['precision']:.4f} "
              f"recall {t['recall']:.4f} F1 {t['f1']:.4f} FPR {t['false_positive_rate']:.4f}")
    print(f"scores: {report.scores_csv}")
    overlays = [f for f in report.figures if os.path.basename(os.path.dirname(f)) == "overlays"]
    print(f"figures: {', '.join(f for f in report.figures if f not in overlays)}")
    if overlays:
        print(f"defect-mask overlays: {os.path.dirname(overlays[0])}/ ({len(overlays)} images)")
    if log_dir:
        print(f"TensorBoard: tensorboard --logdir {log_dir}")


def _comparison_table(rows):
    lines = ["| mode | Γ | image score | AUROC | AUPRC | TPR@1%FPR | pixel AUROC | PRO | "
             "s / image | images / s |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        top = r["evaluation"]
        for name, e in top.get("image_scores", {"-": top}).items():
            metric = (lambda k, d=e: f"{d[k]:.4f}" if k in d else "-")
            map_score = name != "study"  # a map score is judged on the standardised map
            pixel = metric("pixel_auroc_standardised" if map_score else "pixel_auroc", top)
            decides = " (decides)" if name == top.get("image_score") else ""
            lines.append(f"| {r['mode']} | {r['steps']} | {name}{decides} | {metric('auroc')} | "
                         f"{metric('auprc')} | {metric('tpr_at_fpr_1pct')} | {pixel} | "
                         f"{metric('pro', top) if map_score else '-'} | "
                         f"{r['seconds'] / r['images']:.4f} | "
                         f"{r['images'] / max(r['seconds'], 1e-9):.1f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    threshold_override = _parse_threshold(_THRESHOLD.value)
    synthetic_counts = _parse_counts(_SYNTHETIC_COUNTS.value)
    from ic_anogan import (atomic_io, calibration, cli, config, data, export, scoring, serving,
                           train)
    cli.setup_logging()
    log = logging.getLogger("score_main")
    model_dir = _MODEL_DIR.value
    name_for_logs = model_dir or os.path.dirname(os.path.normpath(_SAVED_MODEL.value))
    for mode in _MODE.value or []:
        if mode not in config.SCORING_MODES + ("all",):
            raise app.UsageError(f"--mode={mode}: expected a list of "
                                 f"{', '.join(config.SCORING_MODES)} or all")

    model = served = None
    records = {}
    try:
        if _SAVED_MODEL.value:
            served = serving.ExportedModel(_SAVED_MODEL.value)
            image_size = served.image_size
            if any(f.present for f in (_SEARCH_STEPS, _DISCRIMINATION_WEIGHT, _LEARNING_RATE,
                                       _RESTARTS, _CLIP_Z, _SEED, _CALIBRATE_DIR, _EXPORT_DIR,
                                       _MAP_RESIDUAL, _MAP_KERNEL, _MAP_KERNEL_SIZE,
                                       _PIXEL_PERCENTILE)):
                raise app.UsageError("--saved_model scores with the export's baked-in settings; "
                                     "search, calibration and export flags do not apply")
            modes = _modes(served.modes, _MODE.value) or [served.default_mode]
            missing = [m for m in modes if m not in served.modes]
            supported = served.modes
        else:
            model = train.load_trained_model(model_dir)
            records = calibration.read_all(model_dir)
            image_size = model.model_config.image_size
            modes = _modes(model.scoring_modes, _MODE.value) or [
                config.default_mode(model.encoder is not None)]
            missing = [m for m in modes if m not in model.scoring_modes]
            supported = model.scoring_modes
    except (train.ModelDirError, calibration.CalibrationError, export.ExportError,
            FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 1
    if missing:
        where = _SAVED_MODEL.value or model_dir
        log.error("--mode=%s: %s supports only %s%s", ",".join(missing), where,
                  ", ".join(supported), "" if served else
                  " (the encoder modes need an encoder: train_main.py trains one unless "
                  "--noencoder)")
        return 1
    if threshold_override is not None and len(modes) > 1:
        raise app.UsageError("--threshold applies to one mode; give a single --mode")
    # Every place this run writes is checked now, before any search runs.
    output_root = _OUTPUT_DIR.value or os.path.join(model_dir or _SAVED_MODEL.value, "scores")
    log_root = _LOG_DIR.value or cli.default_log_dir(name_for_logs)
    places = ([("export_dir", _EXPORT_DIR.value)] if _EXPORT_DIR.value
              else [("output_dir", output_root), ("log_dir", log_root)])
    if _CALIBRATE_DIR.value:
        places.append(("model_dir", model_dir))
    for flag, folder in places:
        reason = atomic_io.unwritable_reason(folder)
        if reason:
            raise app.UsageError(f"--{flag}={folder}: {reason}")

    if served is None and any(f.present for f in (_MAP_RESIDUAL, _MAP_KERNEL, _MAP_KERNEL_SIZE,
                                                  _PIXEL_PERCENTILE)) \
            and not _CALIBRATE_DIR.value:
        raise app.UsageError("--map_residual, --map_kernel, --map_kernel_size and "
                             "--pixel_percentile set how the map statistics are computed, at "
                             "calibration: give them with --calibrate_dir")
    map_config = None if served else _map_config(records, modes)
    search_configs = {} if served else {m: _search_settings(m, records) for m in modes}
    trained_on = (model.metadata.get("data", {}) if model else {}).get("synthetic_package")
    package = _SYNTHETIC_PACKAGE.value or trained_on or "sop"
    try:
        if _CALIBRATE_DIR.value:
            good = data.load_training_set(_CALIBRATE_DIR.value, image_size, _SKIP_CORRUPT.value,
                                          max_image_pixels=_MAX_IMAGE_PIXELS.value)
            log.info("recalibrating %s on %s", ", ".join(modes), data.describe(good))
            for mode in modes:
                steps = search_configs[mode].steps
                records[mode] = scoring.calibrate(
                    model, good, search_configs[mode], _PERCENTILE.value, _BATCH_SIZE.value,
                    source=_CALIBRATE_DIR.value,
                    progress=cli.StepProgress(len(good) * steps, f"calibration ({mode})")
                    if steps else None,
                    chunk_steps=_CHUNK_STEPS.value or max(1, steps // 20),
                    map_config=map_config, log_dir=log_root)
        if not _EXPORT_DIR.value:
            images = data.load_scoring_set(_DATA_DIR.value, image_size, _SKIP_CORRUPT.value,
                                           synthetic_counts=synthetic_counts,
                                           synthetic_split=_SYNTHETIC_SPLIT.value,
                                           synthetic_package=package,
                                           max_image_pixels=_MAX_IMAGE_PIXELS.value)
    except (data.DataError, calibration.CalibrationError, ValueError) as e:
        log.error("%s", e)
        return 1

    # Per mode: the image score that decides, its threshold, every score's
    # threshold (for the side-by-side figures) and the map statistics.
    image_scores, thresholds, all_thresholds, statistics = {}, {}, {}, {}
    for mode in modes:
        try:
            if served:
                statistics[mode] = served.map_statistics(mode)
                all_thresholds[mode] = {served.image_scores[mode]: served.thresholds[mode]}
            elif mode in records:
                statistics[mode] = calibration.map_statistics(records[mode])
                all_thresholds[mode] = calibration.thresholds(records[mode])
            else:
                statistics[mode], all_thresholds[mode] = None, {}
        except (calibration.CalibrationError, ValueError) as e:
            log.error("%s", e)
            return 1
        default_score = (served.image_scores[mode] if served else
                         config.DEFAULT_IMAGE_SCORE if statistics[mode] else "study")
        image_scores[mode] = _IMAGE_SCORE.value or default_score
        if image_scores[mode] != "study" and statistics[mode] is None:
            log.error("--image_score=%s: %s has no good-part map statistics for mode %s; "
                      "add them with --calibrate_dir=<good images> (or use --image_score=study)",
                      image_scores[mode], _SAVED_MODEL.value or model_dir, mode)
            return 1
        if statistics[mode] is None and _IMAGE_SCORE.value is None and not served:
            log.warning("%s: mode %s was calibrated before the map scores; deciding with the "
                        "study score A(x). Add the good-part map statistics with "
                        "--calibrate_dir=<good images> to decide from the map (map_max).",
                        model_dir, mode)
        thresholds[mode] = all_thresholds[mode].get(image_scores[mode])
        if mode in records:
            changed = calibration.mismatched_settings(records[mode], search_configs[mode])
            if changed and threshold_override is None:
                log.warning("the stored %s threshold was calibrated with other search settings "
                            "(%s); its false-reject rate does not hold. Recalibrate with "
                            "--calibrate_dir or give --threshold.", mode, ", ".join(changed))
        elif not served and threshold_override is None:
            log.warning("%s has no calibration for mode %s: no threshold, is_anomaly left "
                        "empty (calibrate with --calibrate_dir)", model_dir, mode)
        if served and image_scores[mode] != served.image_scores[mode]:
            log.warning("the export decides mode %s by %s; %s has no threshold baked in, so "
                        "is_anomaly in scores.csv is left empty", mode,
                        served.image_scores[mode], image_scores[mode])
        if threshold_override is not None:
            thresholds[mode] = threshold_override
            all_thresholds[mode][image_scores[mode]] = threshold_override

    if _EXPORT_DIR.value:
        try:
            path = export.export_saved_model(
                model, _EXPORT_DIR.value, search_configs[modes[0]], thresholds[modes[0]],
                map_statistics=statistics[modes[0]], image_score=image_scores[modes[0]],
                more_modes=[export.ServedMode(search_configs[m], thresholds[m], statistics[m],
                                              image_scores[m]) for m in modes[1:]])
        except (export.ExportError, OSError) as e:
            log.error("%s", e)
            return 1
        print(f"exported SavedModel to {path}; serving_default scores with {modes[0]} "
              f"(Γ = {search_configs[modes[0]].steps}, decides by {image_scores[modes[0]]}, "
              f"threshold {thresholds[modes[0]]}); "
              f"signatures: {', '.join(export.signature_names(modes))}")
        return 0

    log.info("scoring %s", data.describe(images))
    rows = []
    for mode in modes:
        settings = (served.settings_of(mode) if served
                    else config.to_dict(search_configs[mode]))
        steps = int(settings["steps"])
        log.info("mode %s: %s", mode, settings)
        progress = cli.StepProgress(len(images) * steps, mode) if steps else None
        start = time.time()
        try:
            if served:
                outputs = served.score(images, _BATCH_SIZE.value, progress, mode=mode)
            else:
                search = scoring.make_search(model, search_configs[mode])
                outputs = scoring.run_search(search, images.images, _BATCH_SIZE.value,
                                             _CHUNK_STEPS.value or max(1, steps // 20), progress)
                outputs = scoring.add_map_outputs(images.images, outputs, statistics[mode])
        except KeyboardInterrupt:
            log.error("interrupted during mode %s: its results were not written", mode)
            return 130
        seconds = time.time() - start
        several = len(modes) > 1
        output_dir = os.path.join(output_root, mode) if several else output_root
        log_dir = os.path.join(log_root, mode) if several else log_root
        report = scoring.write_report(
            output_dir, images, outputs, thresholds[mode], log_dir=log_dir,
            image_score=image_scores[mode], thresholds=all_thresholds[mode],
            map_statistics=statistics[mode], extra={
                "mode": mode, "search": settings, "threshold": thresholds[mode],
                "map": (None if statistics[mode] is None else {
                    "config": config.to_dict(statistics[mode].config),
                    "count": statistics[mode].count,
                    "pixel_threshold": statistics[mode].pixel_threshold}),
                "search_seconds": seconds, "seconds_per_image": seconds / len(images),
                "images_per_s": len(images) / max(seconds, 1e-9),
                "img_steps_per_s": len(images) * steps / max(seconds, 1e-9),
                "model": os.path.abspath(_SAVED_MODEL.value or model_dir),
                "data": _DATA_DIR.value or "synthetic"})
        log.info("%s: scored %d images in %.1f s (%.1f images/s)", mode, len(images), seconds,
                 len(images) / max(seconds, 1e-9))
        if several:
            print(f"== mode {mode} (Γ = {steps})")
        _print_summary(report, log_dir)
        rows.append({"mode": mode, "steps": steps, "evaluation": report.evaluation,
                     "seconds": seconds, "images": len(images)})
    if len(rows) > 1:
        print(_comparison_table(rows))
    return 0


if __name__ == "__main__":
    app.run(main)
