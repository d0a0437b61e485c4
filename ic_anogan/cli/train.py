"""Trains an AnoGAN model on good images and calibrates its decision threshold.

    python train_main.py --model_dir=models/line3 --data_dir=/path/to/good_images

Without --data_dir it trains on the built-in synthetic IC packages. The
network size, augmentation and training length not given by flags are chosen
from the number of good images (ic_anogan/training/training_plan.py). After the GAN it
trains the encoder E (--noencoder skips it), then calibrates every scoring
mode on the held-out good images: ic_anogan.jobs.train_job.run, which this
command calls with the RunConfig its flags build. Started again with
the same flags, an interrupted run resumes.
"""

import dataclasses

from absl import app, flags

from ic_anogan import config as config_lib
from ic_anogan.cli import flag_table
from ic_anogan.cli.flag_table import Flag
from ic_anogan.cli.flags import calibration_rows, map_rows

# absl.logging defines --log_dir for log files, which these binaries never
# write; the flag is taken over for the TensorBoard directory, as users expect.
if "log_dir" in flags.FLAGS:
    delattr(flags.FLAGS, "log_dir")

# Every flag of the command, by the RunConfig field it sets (help, type and default
# from the field unless the row says otherwise), and the flags of the run itself.
ROWS = (
    Flag("data_dir", "data.data_dir", "data"),
    Flag("skip_corrupt", "data.skip_corrupt", "data"),
    Flag("max_image_pixels", "data.max_image_pixels", "data"),
    Flag("synthetic_train_count", "data.synthetic_train_count", "data"),
    Flag("synthetic_package", "data.synthetic_package", "data", default="sop"),
    Flag("validation_fraction", "train.validation_fraction", "data"),
    Flag("image_size", "model.image_size", "model"),
    Flag("latent_dim", "model.latent_dim", "model"),
    Flag("base_filters", "model.base_filters", "model", default=None),
    Flag("batch_size", "train.batch_size", "training"),
    Flag("updates", "train.updates", "training"),
    Flag("epochs", "train.epochs", "training"),
    Flag("learning_rate", "train.learning_rate", "training"),
    Flag("beta_1", "train.beta_1", "training"),
    Flag("seed", "train.seed", "training", also=("encoder.seed",)),
    Flag("ema_decay", "train.ema_decay", "training"),
    Flag("d_penalty", "train.d_penalty", "training"),
    Flag("r1_gamma", "train.r1_gamma", "training"),
    Flag("augment", "train.augment", "training", default="auto",
         values={"auto": None, "on": True, "off": False},
         help="DiffAugment (translation, cutout) on what D sees; auto is off: it lowered "
              "detection at every data size measured."),
    Flag("keep_best", "train.keep_best", "training"),
    Flag("monitor_every_epochs", "train.monitor_every_epochs", "training"),
    Flag("monitor_search_steps", "train.monitor_search_steps", "training"),
    Flag("encoder", "run.encoder", "training", kind="bool", default=True,
         help="Train the encoder after the GAN (enables the encoder modes)."),
    Flag("encoder_epochs", "encoder.epochs", "training"),
    Flag("encoder_feature_weight", "encoder.feature_weight", "training"),
    Flag("encoder_learning_rate", "encoder.learning_rate", "training"),
    Flag("encoder_batch_size", "encoder.batch_size", "training", fallback="train.batch_size",
         help="Images per encoder training step (per replica); default: --batch_size."),
    Flag("strategy", "distribution.strategy", "training", kind="enum", default="auto",
         choices=("auto", "default", "mirrored", "multi_worker"),
         help="tf.distribute strategy; multi_worker (and auto) read TF_CONFIG."),
    Flag("collective_timeout_seconds", "distribution.collective_timeout_seconds", "training",
         kind="float", default=600.0,
         help="Multi-worker: a collective waiting longer for a lost or stalled peer ends "
              "every surviving worker with an error naming it; 0: wait forever."),
    Flag("search_steps", "search.steps", "search"),
    Flag("encoder_search_steps", "calibration.encoder_search_steps", "search"),
    Flag("discrimination_weight", "search.discrimination_weight", "search"),
    Flag("search_learning_rate", "search.learning_rate", "search"),
    Flag("restarts", "search.restarts", "search"),
    Flag("clip_z", "search.clip_z", "search"),
    Flag("search_seed", "search.seed", "search"),
    Flag("search_batch_size", "calibration.batch_size", "search"),
    *map_rows("calibration.map", as_stored=False),
    Flag("calibrate", "run.calibrate", "calibration", kind="bool", default=True,
         help="After training, score the held-out images and store the threshold."),
    *calibration_rows(recalibrating=False),
    Flag("model_dir", "run.model_dir", "output", help="Where the trained model is written."),
    Flag("log_dir", "run.log_dir", "output",
         help="TensorBoard directory; default tensorboard_logs/<model name>."),
    Flag("config", "run.config", "output",
         help="Replay a run: a model directory's config.json (its `run` section) gives every "
              "setting, and each flag given beside it overrides its one field. The same "
              "settings train the same weights."),
)
FLAGS = flag_table.define(ROWS)
flags.mark_flags_as_required(["model_dir"])
# The flags that add or drop a whole section of the run.
STEP_FLAGS = {"encoder": "encoder", "calibration": "calibrate"}


def _usage(error: BaseException) -> app.UsageError:
    return app.UsageError(flag_table.translate(error, FLAGS))


def run_config_from_flags() -> config_lib.RunConfig:
    """The RunConfig the flags ask for (a replayed one with --config), every value checked.

    Raises:
      app.UsageError: a value is refused; the message names its flag.
    """
    from ic_anogan import config
    if FLAGS.value("config"):
        from ic_anogan.cli import replay
        run_config = replay.replayed_run_config(FLAGS.value("config"), FLAGS, STEP_FLAGS)
        checked = run_config.calibration
    else:
        try:
            run_config = config.RunConfig.from_dict(
                flag_table.sections_from(FLAGS.field_values()))
        except config.SettingError as e:
            raise _usage(e) from None
        # Checked even when --nocalibrate drops it: a bad value is refused whatever else
        # is set.
        checked = run_config.calibration
        run_config = dataclasses.replace(
            run_config, encoder=run_config.encoder if FLAGS.value("encoder") else None,
            calibration=run_config.calibration if FLAGS.value("calibrate") else None)
    try:
        if checked is not None and checked.map is not None:
            checked.map.check_image_size(run_config.model.image_size)
    except config.SettingError as e:
        raise _usage(e) from None
    return run_config


def main(argv):
    del argv
    # Every value is checked by the config it goes to; a bad one is a usage error naming
    # its flag, raised before TensorFlow loads.
    run_config = run_config_from_flags()
    from ic_anogan.cli import common as cli
    from ic_anogan.core import atomic_io
    from ic_anogan.data import image_set, sources
    model_dir = FLAGS.value("model_dir")
    log_dir = FLAGS.value("log_dir") or cli.default_log_dir(model_dir)
    for flag, folder in (("model_dir", model_dir), ("log_dir", log_dir)):
        reason = atomic_io.unwritable_reason(folder)
        if reason:
            raise app.UsageError(f"--{flag}={folder}: {reason}")
    try:
        sources.resolve_source(run_config.data.data_dir)
    except image_set.DataError as e:
        cli.report_error(e, FLAGS)
        return 1
    from ic_anogan.training import cluster
    timeout = FLAGS.value("collective_timeout_seconds")
    if not (timeout >= 0 and timeout != float("inf")):
        raise app.UsageError(f"--collective_timeout_seconds={timeout}: "
                             "expected a finite number >= 0")
    try:
        cluster.check(FLAGS.value("strategy"))
    except cluster.ClusterConfigError as e:
        cli.report_error(e, FLAGS)
        return 1
    # TensorFlow only now: --help and refused flags or places answer at once.
    from ic_anogan.jobs import train_job
    from ic_anogan.training import distribution
    cli.setup_logging()
    cli.log_runtime()
    print(f"TensorBoard: tensorboard --logdir {log_dir}", flush=True)
    try:
        train_job.run(run_config, model_dir=model_dir, log_dir=log_dir,
                      strategy=distribution.make_strategy(FLAGS.value("strategy"),
                                                          timeout or None),
                      progress_factory=cli.StepProgress)
    except cli.expected_errors() as e:
        cli.report_error(e, FLAGS)
        return 1
    print(f"model written to {model_dir}; TensorBoard logs in {log_dir}")
    return 0


def run() -> None:
    """The `ic-anogan-train` command."""
    from ic_anogan.cli import common
    common.run_command(main, FLAGS)


if __name__ == "__main__":
    run()
