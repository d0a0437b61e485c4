"""Exports a trained model as a SavedModel with the search built in, for TF Serving.

    python export_main.py --model_dir=models/line3 --export_dir=exports/line3 --mode=all

Writes EXPORT_DIR/<next version>/ (never overwriting a version) with the
calibrated search settings, threshold and map statistics of each mode baked
in; the first mode listed is served by serving_default. The work is
ic_anogan.jobs.score_job.run with an export request, which
`score_main.py --export_dir` makes too.
"""

from absl import app, flags

from ic_anogan.cli.flags import SEARCH_RENAMES, define_old_name, value_of

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
_SEARCH_STEPS = flags.DEFINE_integer("search_steps", None, "Γ; default: as calibrated.")
_DISCRIMINATION_WEIGHT = flags.DEFINE_float("discrimination_weight", None,
                                            "λ; default: as calibrated.")
_LEARNING_RATE = flags.DEFINE_float("search_learning_rate", None,
                                    "Adam step size on z; default: as calibrated.")
_OLD_LEARNING_RATE = define_old_name("learning_rate", _LEARNING_RATE)
_RESTARTS = flags.DEFINE_integer("restarts", None,
                                 "Random starts per image; default: as calibrated.")
_CLIP_Z = flags.DEFINE_float("clip_z", None, "Clip z to [-clip_z, clip_z]; default: as calibrated.")
_SEED = flags.DEFINE_integer("search_seed", None,
                             "Seed of the starting points; default: as calibrated.")
_OLD_SEED = define_old_name("seed", _SEED)

flags.mark_flags_as_required(["model_dir", "export_dir"])


def main(argv):
    del argv
    from ic_anogan import config
    from ic_anogan.jobs import score_request
    try:
        request = score_request.ScoreRequest(
            model_dir=_MODEL_DIR.value, modes=_MODE.value, export_dir=_EXPORT_DIR.value,
            image_score=_IMAGE_SCORE.value, threshold=_THRESHOLD.value,
            overrides=score_request.SearchOverrides(
                steps=_SEARCH_STEPS.value, discrimination_weight=_DISCRIMINATION_WEIGHT.value,
                learning_rate=value_of(_LEARNING_RATE, _OLD_LEARNING_RATE),
                restarts=_RESTARTS.value, clip_z=_CLIP_Z.value,
                seed=value_of(_SEED, _OLD_SEED)))
        score_request.check_sources(request)
    except config.ConfigError as e:
        raise app.UsageError(e.as_flag(SEARCH_RENAMES)) from None
    except score_request.ScoringError as e:
        raise app.UsageError(str(e)) from None
    from ic_anogan.cli import common as cli
    from ic_anogan.jobs import score_job
    cli.setup_logging()
    cli.log_runtime()
    try:
        result = score_job.run(request)
    except score_request.UsageRefusal as e:
        raise app.UsageError(str(e)) from None
    except cli.expected_errors() as e:
        cli.report_error(e)
        return 1
    print(result.export_summary())
    return 0


def run() -> None:
    """The `ic-anogan-export` command."""
    app.run(main)


if __name__ == "__main__":
    run()
