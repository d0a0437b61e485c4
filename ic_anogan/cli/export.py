"""Exports a trained model as a SavedModel with the search built in, for TF Serving.

    python export_main.py --model_dir=models/line3 --export_dir=exports/line3 --mode=all

Writes EXPORT_DIR/<next version>/ (never overwriting a version) with the
calibrated search settings, threshold and map statistics of each mode baked
in; the first mode listed is served by serving_default. The work is
ic_anogan.jobs.score_job.run with an export request, which
the score command's --export_dir makes too.
"""

from absl import flags

from ic_anogan import config as config_lib
from ic_anogan.cli import flag_table
from ic_anogan.cli.flag_table import Flag
from ic_anogan.cli.flags import search_override_rows

ROWS = (
    Flag("model_dir", "score.model_dir", "model",
         help="A model directory the train command wrote."),
    Flag("mode", "score.modes", "search", kind="list",
         help="Mode(s) to serve: search, encoder, encoder_search, or all; the first is "
              "serving_default's. Default: encoder_search when the model has an encoder, "
              "else search."),
    *search_override_rows("as calibrated"),
    Flag("image_score", "score.image_score", "decision", kind="enum",
         choices=config_lib.IMAGE_SCORES,
         help="What is_anomaly follows; default: map_max when the mode has map statistics, "
              "else study."),
    Flag("threshold", "score.threshold", "decision", kind="float",
         help="Decision threshold (one mode); default: the calibrated one."),
    Flag("export_dir", "score.export_dir", "output",
         help="The export base TF Serving watches; the export goes to "
              "EXPORT_DIR/<next version>/."),
)
FLAGS = flag_table.define(ROWS)
flags.mark_flags_as_required(["model_dir", "export_dir"])


def main(argv):
    del argv
    from ic_anogan.cli import common
    from ic_anogan.jobs import score_request
    request = common.checked_request(lambda: score_request.ScoreRequest(
        model_dir=FLAGS.value("model_dir"), modes=FLAGS.value("mode"),
        export_dir=FLAGS.value("export_dir"), image_score=FLAGS.value("image_score"),
        threshold=FLAGS.value("threshold"),
        overrides=score_request.SearchOverrides(**FLAGS.field_values("search."))), FLAGS)
    result, status = common.run_score_job(request, FLAGS)
    if result is None:
        return status
    print(result.export_summary())
    return 0


def run() -> None:
    """The `ic-anogan-export` command."""
    from ic_anogan.cli import common
    common.run_command(main, FLAGS)


if __name__ == "__main__":
    run()
