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

from absl import app, flags

from ic_anogan import config as config_lib
from ic_anogan.cli.flags import (define_calibration_flags, define_map_flags, define_old_name,
                                 define_search_overrides, value_of)

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
_SEARCH = define_search_overrides("Γ of the searching modes; default: each mode's "
                                  "calibrated setting.")
_JIT = flags.DEFINE_bool("jit_compile", False, "Compile the search with XLA.")
_BATCH_SIZE = flags.DEFINE_integer("search_batch_size", 64, "Images per search call.")
_OLD_BATCH_SIZE = define_old_name("batch_size", _BATCH_SIZE)
_CHUNK_STEPS = flags.DEFINE_integer("chunk_steps", None,
                                    "Steps per graph call (progress, Ctrl-C); default Γ/20.")
_THRESHOLD = flags.DEFINE_string("threshold", None,
                                 "Decision threshold; default: the calibrated one.")
_CALIBRATE_DIR = flags.DEFINE_string(
    "calibrate_dir", None, "Recalibrate the threshold on this folder of good images first "
    "(never defect images); the new threshold is stored in --model_dir.")
_PERCENTILE = flags.DEFINE_float("calibration_percentile", 99.0,
                                 "With --calibrate_dir: threshold = this percentile.")
_CALIBRATION = define_calibration_flags("With --calibrate_dir: ")
_SKIP_CORRUPT = flags.DEFINE_bool("skip_corrupt", False,
                                  "Skip unreadable image files (and count them) instead of "
                                  "failing.")
_SYNTHETIC_SPLIT = flags.DEFINE_enum(
    "synthetic_split", "test", ["test", "validation"],
    "Synthetic split to score when --data_dir is unset; tune settings on 'validation'.")
_SYNTHETIC_PACKAGE = flags.DEFINE_enum(
    "synthetic_package", None, list(config_lib.SYNTHETIC_PACKAGES),
    "Synthetic images when --data_dir is unset (sop, qfp, mixed IC packages or texture); "
    "default: the ones the model was trained on.")
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
_MAP = define_map_flags(as_stored=True)
_SYNTHETIC_COUNTS = flags.DEFINE_string(
    "synthetic_counts", "good:1100,short_fill:755",
    "Synthetic test split when --data_dir is unset: type:count,... "
    "(types: good, short_fill, void, chipped_edge, scratch).")

_MAX_IMAGE_PIXELS = flags.DEFINE_integer(
    "max_image_pixels", 100_000_000, "Image files above this many pixels (width x height) are "
    "refused, or skipped with --skip_corrupt, before they are decoded.")


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


def main(argv):
    del argv
    # Every value is checked by the config or request it goes to; a bad one is a usage
    # error naming its flag, raised before TensorFlow loads.
    from ic_anogan import config
    from ic_anogan.jobs import score_request
    if _MAP.given() and not _CALIBRATE_DIR.value:
        raise app.UsageError(", ".join(f"--{f.name}" for f in _MAP.given())
                             + ": set how the map statistics are computed, at calibration: "
                             "give them with --calibrate_dir")

    def build() -> score_request.ScoreRequest:
        data = config.DataConfig(
            data_dir=_DATA_DIR.value, skip_corrupt=_SKIP_CORRUPT.value,
            max_image_pixels=_MAX_IMAGE_PIXELS.value,
            synthetic_package=_SYNTHETIC_PACKAGE.value,
            synthetic_counts=_parse_counts(_SYNTHETIC_COUNTS.value),
            synthetic_split=_SYNTHETIC_SPLIT.value)
        recalibration = score_request.Recalibration(
            good=config.DataConfig(data_dir=_CALIBRATE_DIR.value,
                                   skip_corrupt=_SKIP_CORRUPT.value,
                                   max_image_pixels=_MAX_IMAGE_PIXELS.value),
            percentile=_PERCENTILE.value,
            map_overrides=_MAP.values(),
            threshold_rule=_CALIBRATION.threshold_rule.value,
            outliers=_CALIBRATION.outliers.value
        ) if _CALIBRATE_DIR.value else None
        overrides = score_request.SearchOverrides(**_SEARCH.values())
        return score_request.ScoreRequest(
            model_dir=_MODEL_DIR.value, saved_model=_SAVED_MODEL.value, modes=_MODE.value,
            data=data, output_dir=_OUTPUT_DIR.value, log_dir=_LOG_DIR.value,
            overrides=overrides, image_score=_IMAGE_SCORE.value,
            threshold=_parse_threshold(_THRESHOLD.value), recalibration=recalibration,
            export_dir=_EXPORT_DIR.value, batch_size=value_of(_BATCH_SIZE, _OLD_BATCH_SIZE),
            chunk_steps=_CHUNK_STEPS.value,
            runtime=config.SearchRuntime(jit_compile=_JIT.value))

    from ic_anogan.cli import common
    request = common.checked_request(build)
    # Heavy imports after the flags are checked, so --help and flag errors are instant.
    from ic_anogan.reporting import report
    name = request.model_dir or request.saved_model
    try:
        result, status = common.run_score_job(request, progress_factory=common.StepProgress,
                                              default_log_root=common.default_log_dir(name))
    except KeyboardInterrupt:
        common.report_error("interrupted: the mode being scored was not written")
        return 130
    if result is None:
        return status
    if result.export_path:
        print(result.export_summary())
        return 0
    for mode in result.modes:
        if len(result.modes) > 1:
            print(f"== mode {mode.decision.mode} (Γ = {mode.decision.scorer.search_config.steps})")
        print(report.summary_text(mode.report, mode.log_dir))
    if len(result.modes) > 1:
        print(report.comparison_table([
            {"mode": m.decision.mode, "steps": m.decision.scorer.search_config.steps,
             "evaluation": m.report.evaluation, "seconds": m.seconds, "images": m.images}
            for m in result.modes]))
    return 0


def run() -> None:
    """The `ic-anogan-score` command."""
    from ic_anogan.cli import common
    common.run_command(main)


if __name__ == "__main__":
    run()
