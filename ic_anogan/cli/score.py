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
from ic_anogan.cli import flag_table
from ic_anogan.cli.flag_table import Flag
from ic_anogan.cli.flags import calibration_rows, map_rows, search_override_rows

# absl.logging's --log_dir (for log files, never written here) is taken over
# for the TensorBoard directory.
if "log_dir" in flags.FLAGS:
    delattr(flags.FLAGS, "log_dir")


def parse_threshold(text):
    """A --threshold value: None, or a number (the request refuses one that is not finite)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise app.UsageError(f"--threshold={text!r}: expected a number") from None


def parse_counts(text):
    """A --synthetic_counts value: type:count,... as a dict."""
    counts = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, number = item.partition(":")
        if not number.strip().isdigit():
            raise app.UsageError(f"--synthetic_counts: {item!r} is not type:count")
        counts[name.strip()] = int(number)
    return counts


MODE_HELP = ("Scoring mode(s): search, encoder, encoder_search, or all (every mode the model "
             "supports). Default: encoder_search when the model has an encoder, else search; "
             "with --saved_model, the export's default mode. With --export_dir the first mode "
             "listed is served by serving_default.")
IMAGE_SCORE_HELP = (
    "What decides is_anomaly: study (A(x), the residual summed over the image), map_max "
    "(maximum of the anomaly map standardised by good parts) or map_topk (mean of its top "
    "pixels). Default: map_max when the model has map statistics, else study; with "
    "--saved_model, the export's.")

ROWS = (
    Flag("data_dir", "data.data_dir", "data",
         help="Images to score: a folder (recursive), an MVTec-style root or test/ folder "
              "(labels from folder names), or idx:FOLDER:CLASS.",
         unset="the synthetic test split"),
    Flag("skip_corrupt", "data.skip_corrupt", "data"),
    Flag("max_image_pixels", "data.max_image_pixels", "data"),
    Flag("synthetic_split", "data.synthetic_split", "data"),
    Flag("synthetic_package", "data.synthetic_package", "data",
         unset="the ones the model was trained on"),
    Flag("synthetic_counts", "data.synthetic_counts", "data", kind="string",
         default="good:1100,short_fill:755", parse=parse_counts,
         help="Synthetic test split when --data_dir is unset: type:count,... (types: good, "
              "short_fill, void, chipped_edge, scratch; pit, crack, uneven, frayed for "
              "texture)."),
    Flag("model_dir", "score.model_dir", "model",
         help="A model directory the train command wrote."),
    Flag("saved_model", "score.saved_model", "model",
         help="Score with an exported SavedModel (EXPORT_DIR/<version>) instead of the Python "
              "search; its baked-in settings and threshold apply."),
    Flag("mode", "score.modes", "search", kind="list", help=MODE_HELP),
    *search_override_rows("each mode's calibrated setting"),
    Flag("search_batch_size", "score.batch_size", "search", kind="integer", default=64,
         help="Images per search call.", old_names=("batch_size",)),
    Flag("chunk_steps", "score.chunk_steps", "runtime", kind="integer",
         help="Steps per graph call (progress, Ctrl-C); default Γ/20."),
    Flag("jit_compile", "score.runtime.jit_compile", "runtime", kind="bool", default=False,
         help="Compile the search with XLA."),
    *map_rows("map", as_stored=True),
    Flag("calibrate_dir", "recalibration.good", "calibration",
         help="Recalibrate the threshold on this folder of good images first (never defect "
              "images); the new threshold is stored in --model_dir."),
    *calibration_rows(recalibrating=True),
    Flag("image_score", "score.image_score", "decision", kind="enum",
         choices=config_lib.IMAGE_SCORES, help=IMAGE_SCORE_HELP),
    Flag("threshold", "score.threshold", "decision", kind="string", parse=parse_threshold,
         help="Decision threshold; default: the calibrated one."),
    Flag("output_dir", "score.output_dir", "output",
         help="Where results go; default <model_dir>/scores."),
    Flag("log_dir", "score.log_dir", "output",
         help="TensorBoard directory; default tensorboard_logs/<model name>."),
    Flag("config", "score.config", "output",
         help="Replay a scoring run: the score_config.json it wrote beside its results gives "
              "the request, and each flag given beside it overrides its one field."),
    Flag("export_dir", "score.export_dir", "output",
         help="Export a SavedModel with the search built in (for TF Serving) to "
              "EXPORT_DIR/<next version>/ using the search settings and threshold in force, "
              "then exit."),
)
FLAGS = flag_table.define(ROWS)


def build_request():
    """The ScoreRequest the flags ask for; every value checked by the config or request it
    goes to (a SettingError naming its field path)."""
    from ic_anogan import config
    from ic_anogan.jobs import score_request
    data_values = FLAGS.field_values("data.")
    recalibration = score_request.Recalibration(
        good=config.DataConfig(data_dir=FLAGS.value("calibrate_dir"),
                               skip_corrupt=data_values["skip_corrupt"],
                               max_image_pixels=data_values["max_image_pixels"]),
        map_overrides=score_request.MapOverrides(**FLAGS.field_values("map.")),
        **FLAGS.field_values("calibration.")) if FLAGS.value("calibrate_dir") else None
    return score_request.ScoreRequest(
        model_dir=FLAGS.value("model_dir"), saved_model=FLAGS.value("saved_model"),
        modes=FLAGS.value("mode"), data=config.DataConfig(**data_values),
        output_dir=FLAGS.value("output_dir"), log_dir=FLAGS.value("log_dir"),
        overrides=score_request.SearchOverrides(**FLAGS.field_values("search.")),
        image_score=FLAGS.value("image_score"), threshold=FLAGS.parsed("threshold"),
        recalibration=recalibration, export_dir=FLAGS.value("export_dir"),
        batch_size=FLAGS.value("search_batch_size"), chunk_steps=FLAGS.value("chunk_steps"),
        runtime=config.SearchRuntime(jit_compile=FLAGS.value("jit_compile")))


def main(argv):
    del argv
    # Every value is checked by the config or request it goes to; a bad one is a usage
    # error naming its flag, raised before TensorFlow loads.
    from ic_anogan.cli import common
    if FLAGS.value("config"):
        from ic_anogan.cli import replay
        given = [row for row in ROWS if row.name != "config" and FLAGS.present(row.name)]
        request = common.checked_request(lambda: replay.replayed_score_request(
            FLAGS.value("config"), FLAGS, given), FLAGS)
    else:
        given_map = [row.name for row in map_rows("map", as_stored=True)
                     if FLAGS.present(row.name)]
        if given_map and not FLAGS.value("calibrate_dir"):
            raise app.UsageError(", ".join(f"--{name}" for name in given_map)
                                 + ": set how the map statistics are computed, at "
                                 "calibration: give them with --calibrate_dir")
        request = common.checked_request(build_request, FLAGS)
    # Heavy imports after the flags are checked, so --help and flag errors are instant.
    from ic_anogan.reporting import report
    name = request.model_dir or request.saved_model
    try:
        result, status = common.run_score_job(request, FLAGS,
                                              progress_factory=common.StepProgress,
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
        print(report.summary_text(mode.report))
        if mode.log_dir:
            print(f"TensorBoard: tensorboard --logdir {mode.log_dir}")
    if len(result.modes) > 1:
        print(report.comparison_table([
            {"mode": m.decision.mode, "steps": m.decision.scorer.search_config.steps,
             "evaluation": m.report.evaluation, "seconds": m.seconds, "images": m.images}
            for m in result.modes]))
    return 0


def run() -> None:
    """The `ic-anogan-score` command."""
    from ic_anogan.cli import common
    common.run_command(main, FLAGS)


if __name__ == "__main__":
    run()
