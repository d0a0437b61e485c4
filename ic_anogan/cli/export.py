"""Exports a trained model as a SavedModel with the search built in, for TF Serving.

    python export_main.py --model_dir=models/line3 --export_dir=exports/line3 --mode=all

Writes EXPORT_DIR/<next version>/ (never overwriting a version) with the
calibrated search settings, threshold and map statistics of each mode baked
in; the first mode listed is served by serving_default. The work is
ic_anogan.jobs.score_job.run with an export request, which
`score_main.py --export_dir` makes too.
"""

from absl import flags

from ic_anogan.cli.flags import define_search_overrides

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "A model directory written by train_main.py.")
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None, "The export base TF Serving watches; the export goes to "
    "EXPORT_DIR/<next version>/.")
_MODE = flags.DEFINE_list(
    "mode", None, "Mode(s) to serve: search, encoder, encoder_search, or all; the first is "
    "serving_default's. Default: encoder_search when the model has an encoder, else search.")
_IMAGE_SCORE = flags.DEFINE_enum(
    "image_score", None, ["study", "map_max", "map_topk"],
    "What is_anomaly follows; default: map_max when the mode has map statistics, else study.")
_THRESHOLD = flags.DEFINE_float("threshold", None,
                                "Decision threshold (one mode); default: the calibrated one.")
_SEARCH = define_search_overrides("Γ; default: as calibrated.")

flags.mark_flags_as_required(["model_dir", "export_dir"])


def main(argv):
    del argv
    from ic_anogan.cli import common
    from ic_anogan.jobs import score_request
    request = common.checked_request(lambda: score_request.ScoreRequest(
        model_dir=_MODEL_DIR.value, modes=_MODE.value, export_dir=_EXPORT_DIR.value,
        image_score=_IMAGE_SCORE.value, threshold=_THRESHOLD.value,
        overrides=score_request.SearchOverrides(**_SEARCH.values())))
    result, status = common.run_score_job(request)
    if result is None:
        return status
    print(result.export_summary())
    return 0


def run() -> None:
    """The `ic-anogan-export` command."""
    from ic_anogan.cli import common
    common.run_command(main)


if __name__ == "__main__":
    run()
