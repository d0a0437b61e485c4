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
from ic_anogan.cli.flags import SEARCH_RENAMES, define_calibration_flags, define_map_flags

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Where the trained model is written.")
_CONFIG = flags.DEFINE_string(
    "config", None, "Replay a run: a model directory's config.json (its `run` section) gives "
    "every setting, and each flag given beside it overrides its one field. The same "
    "settings train the same weights.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Good images: a folder (recursive), an MVTec-style root (train/good), "
    "or idx:FOLDER:CLASS. Default: the built-in synthetic IC packages.")
# absl.logging defines --log_dir for log files, which these binaries never
# write; the flag is taken over for the TensorBoard directory, as users expect.
if "log_dir" in flags.FLAGS:
    delattr(flags.FLAGS, "log_dir")
_LOG_DIR = flags.DEFINE_string("log_dir", None,
                               "TensorBoard directory; default tensorboard_logs/<model name>.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Image side: 16, 32, 64, 128 or 256.")
_LATENT_DIM = flags.DEFINE_integer("latent_dim", 100, "Size of z.")
_BASE_FILTERS = flags.DEFINE_integer(
    "base_filters", None, "Filters of the outermost blocks; default: 64 (the study's) from 2000 "
    "training images up, 32 below.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per training step (per replica).")
_UPDATES = flags.DEFINE_integer(
    "updates", None, "Generator updates (the training length); default 3000. An epoch is one "
    "pass over the images, but at least 50 updates.")
_EPOCHS = flags.DEFINE_integer(
    "epochs", None, "Training length in passes over the images, instead of --updates.")
# What the GAN adds to the study's DCGAN; all four off is the study's DCGAN.
_EMA_DECAY = flags.DEFINE_float(
    "ema_decay", 0.999, "Decay of the moving average of G's weights that scoring uses (0: off, "
    "score the raw G).")
_D_PENALTY = flags.DEFINE_enum("d_penalty", "r1", ["r1", "none"],
                               "Penalty on D: R1 on real images (Mescheder et al. 2018) or none.")
_R1_GAMMA = flags.DEFINE_float("r1_gamma", 0.1, "γ of the R1 penalty.")
_AUGMENT = flags.DEFINE_enum(
    "augment", "auto", ["auto", "on", "off"], "DiffAugment (translation, cutout) on what D "
    "sees; auto is off: it lowered detection at every data size measured.")
_KEEP_BEST = flags.DEFINE_bool(
    "keep_best", True, "Keep G and D of the monitor evaluation with the lowest held-out "
    "reconstruction error instead of the last epoch's.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 2e-4, "Adam learning rate for G and D.")
_BETA_1 = flags.DEFINE_float("beta_1", 0.5, "Adam beta_1 for G and D.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for weights, noise, shuffling and the split.")
_VALIDATION_FRACTION = flags.DEFINE_float(
    "validation_fraction", 0.1, "Good images held out (never trained on) for validation and "
    "threshold calibration.")
_SKIP_CORRUPT = flags.DEFINE_bool("skip_corrupt", False,
                                  "Skip unreadable image files (and count them) instead of "
                                  "failing.")
_SYNTHETIC_TRAIN_COUNT = flags.DEFINE_integer(
    "synthetic_train_count", 3277, "Good synthetic images to render when --data_dir is unset.")
_SYNTHETIC_PACKAGE = flags.DEFINE_enum(
    "synthetic_package", "sop", list(config_lib.SYNTHETIC_PACKAGES),
    "Synthetic images when --data_dir is unset: one IC package type (sop, qfp), as a line "
    "model sees, a mix of both (mixed), or textured metal surfaces (texture).")
_STRATEGY = flags.DEFINE_enum("strategy", "auto", ["auto", "default", "mirrored", "multi_worker"],
                              "tf.distribute strategy; multi_worker (and auto) read TF_CONFIG.")
_COLLECTIVE_TIMEOUT = flags.DEFINE_float(
    "collective_timeout_seconds", 600.0, "Multi-worker: a collective waiting longer for a lost "
    "or stalled peer ends every surviving worker with an error naming it; 0: wait forever.")
_MONITOR_EVERY = flags.DEFINE_integer(
    "monitor_every_epochs", None, "Search held-out good images every N epochs, log it and keep "
    "the best epoch (--keep_best); default: 10 times per run; 0: off.")
_MONITOR_STEPS = flags.DEFINE_integer("monitor_search_steps", 50, "Steps of that search.")
# The encoder E, trained after the GAN with G and D frozen.
_ENCODER = flags.DEFINE_bool("encoder", True,
                             "Train the encoder after the GAN (enables the encoder modes).")
_ENCODER_EPOCHS = flags.DEFINE_integer(
    "encoder_epochs", 20, "Encoder training epochs: passes over the images, at least 50 "
    "updates each.")
_ENCODER_FEATURE_WEIGHT = flags.DEFINE_float(
    "encoder_feature_weight", 1.0, "κ: weight of the feature residual in the encoder loss.")
_ENCODER_LEARNING_RATE = flags.DEFINE_float("encoder_learning_rate", 2e-4,
                                            "Adam learning rate of the encoder.")
_ENCODER_BATCH_SIZE = flags.DEFINE_integer(
    "encoder_batch_size", None, "Images per encoder training step (per replica); default: "
    "--batch_size.")
# Calibration: how the held-out good images are scored after training.
_CALIBRATE = flags.DEFINE_bool("calibrate", True,
                               "After training, score the held-out images and store the threshold.")
_SEARCH_STEPS = flags.DEFINE_integer("search_steps", 500,
                                     "Γ: latent search steps of the 'search' mode.")
_ENCODER_SEARCH_STEPS = flags.DEFINE_integer(
    "encoder_search_steps", 50, "Γ of the 'encoder_search' mode (search started at E(x)).")
_DISCRIMINATION_WEIGHT = flags.DEFINE_float("discrimination_weight", 0.1, "λ of the search.")
_SEARCH_LEARNING_RATE = flags.DEFINE_float("search_learning_rate", 0.05,
                                           "Adam learning rate of the latent search.")
_RESTARTS = flags.DEFINE_integer("restarts", 1, "Random starts per image in the search.")
_CLIP_Z = flags.DEFINE_float("clip_z", None, "Clip z to [-clip_z, clip_z] during the search.")
_SEARCH_SEED = flags.DEFINE_integer("search_seed", 0, "Seed of the search's starting points.")
_SEARCH_BATCH_SIZE = flags.DEFINE_integer("search_batch_size", 64, "Images per search call.")
_PERCENTILE = flags.DEFINE_float("calibration_percentile", 99.0,
                                 "Each threshold estimates this percentile of unseen good "
                                 "parts' scores (--threshold_rule says how).")

# The good parts' anomaly-map statistics, computed with each threshold.
_MAP = define_map_flags(as_stored=False)
_CALIBRATION = define_calibration_flags()

_MAX_IMAGE_PIXELS = flags.DEFINE_integer(
    "max_image_pixels", 100_000_000, "Image files above this many pixels (width x height) are "
    "refused, or skipped with --skip_corrupt, before they are decoded.")

flags.mark_flags_as_required(["model_dir"])

# Each flag that sets one field of RunConfig, by the field's path, for a --config
# replay: a flag given beside the file overrides exactly its field.
FLAG_FIELDS = {
    "image_size": "model.image_size", "latent_dim": "model.latent_dim",
    "base_filters": "model.base_filters",
    "batch_size": "train.batch_size", "epochs": "train.epochs", "updates": "train.updates",
    "learning_rate": "train.learning_rate", "beta_1": "train.beta_1",
    "ema_decay": "train.ema_decay", "d_penalty": "train.d_penalty",
    "r1_gamma": "train.r1_gamma", "augment": "train.augment", "keep_best": "train.keep_best",
    "validation_fraction": "train.validation_fraction",
    "monitor_every_epochs": "train.monitor_every_epochs",
    "monitor_search_steps": "train.monitor_search_steps",
    "data_dir": "data.data_dir", "skip_corrupt": "data.skip_corrupt",
    "max_image_pixels": "data.max_image_pixels",
    "synthetic_train_count": "data.synthetic_train_count",
    "synthetic_package": "data.synthetic_package",
    "search_steps": "search.steps", "discrimination_weight": "search.discrimination_weight",
    "search_learning_rate": "search.learning_rate", "restarts": "search.restarts",
    "clip_z": "search.clip_z", "search_seed": "search.seed",
    "encoder_epochs": "encoder.epochs", "encoder_feature_weight": "encoder.feature_weight",
    "encoder_learning_rate": "encoder.learning_rate",
    "encoder_batch_size": "encoder.batch_size",
    "encoder_search_steps": "calibration.encoder_search_steps",
    "calibration_percentile": "calibration.percentile",
    "search_batch_size": "calibration.batch_size",
    "threshold_rule": "calibration.threshold_rule",
    "calibration_outliers": "calibration.outliers",
    **{holder.name: f"calibration.map.{field}" for field, holder in _MAP.holders.items()},
}
# Flags that set more than one field: --seed seeds the GAN and the encoder.
FLAG_FIELD_SETS = {"seed": ("train.seed", "encoder.seed")}
# Flag values that their config field holds differently.
FLAG_VALUES = {"augment": {"auto": None, "on": True, "off": False}}
# Flags whose config field has another name.
_RENAMES = SEARCH_RENAMES


def main(argv):
    del argv
    # Every value is checked by the config it goes to; a bad one is a usage error naming
    # its flag, raised before TensorFlow loads.
    from ic_anogan import config
    try:
        search = config.SearchConfig(
            steps=_SEARCH_STEPS.value, discrimination_weight=_DISCRIMINATION_WEIGHT.value,
            learning_rate=_SEARCH_LEARNING_RATE.value, restarts=_RESTARTS.value,
            clip_z=_CLIP_Z.value, seed=_SEARCH_SEED.value)
    except config.ConfigError as e:
        raise app.UsageError(e.as_flag(_RENAMES)) from None
    try:
        run_config = config.RunConfig(
            model=config.ModelConfig(_IMAGE_SIZE.value, _LATENT_DIM.value, _BASE_FILTERS.value),
            train=config.TrainConfig(
                batch_size=_BATCH_SIZE.value, epochs=_EPOCHS.value, updates=_UPDATES.value,
                learning_rate=_LEARNING_RATE.value, beta_1=_BETA_1.value, seed=_SEED.value,
                ema_decay=_EMA_DECAY.value, d_penalty=_D_PENALTY.value,
                r1_gamma=_R1_GAMMA.value,
                augment=FLAG_VALUES["augment"][_AUGMENT.value],
                keep_best=_KEEP_BEST.value, validation_fraction=_VALIDATION_FRACTION.value,
                monitor_every_epochs=_MONITOR_EVERY.value,
                monitor_search_steps=_MONITOR_STEPS.value),
            data=config.DataConfig(
                data_dir=_DATA_DIR.value, skip_corrupt=_SKIP_CORRUPT.value,
                max_image_pixels=_MAX_IMAGE_PIXELS.value,
                synthetic_train_count=_SYNTHETIC_TRAIN_COUNT.value,
                synthetic_package=_SYNTHETIC_PACKAGE.value),
            search=search,
            # Built (and so checked) even when --noencoder or --nocalibrate
            # leaves them unused: a bad value is refused whatever else is set.
            encoder=config.EncoderConfig(
                epochs=_ENCODER_EPOCHS.value, feature_weight=_ENCODER_FEATURE_WEIGHT.value,
                batch_size=_ENCODER_BATCH_SIZE.value or _BATCH_SIZE.value,
                learning_rate=_ENCODER_LEARNING_RATE.value, seed=_SEED.value),
            calibration=config.CalibrationConfig(
                encoder_search_steps=_ENCODER_SEARCH_STEPS.value,
                percentile=_PERCENTILE.value, batch_size=_SEARCH_BATCH_SIZE.value,
                map=config.MapConfig(**_MAP.values()),
                threshold_rule=_CALIBRATION.threshold_rule.value,
                outliers=_CALIBRATION.outliers.value))
        run_config.calibration.map.check_image_size(run_config.model.image_size)
    except config.ConfigError as e:
        raise app.UsageError(e.as_flag()) from None
    run_config = dataclasses.replace(
        run_config, encoder=run_config.encoder if _ENCODER.value else None,
        calibration=run_config.calibration if _CALIBRATE.value else None)
    if _CONFIG.value:
        from ic_anogan.cli import replay
        run_config = replay.replayed_run_config(_CONFIG.value, FLAG_FIELDS, FLAG_FIELD_SETS,
                                                {"encoder": _ENCODER, "calibration": _CALIBRATE},
                                                FLAG_VALUES)
        if run_config.calibration is not None:
            try:
                run_config.calibration.map.check_image_size(run_config.model.image_size)
            except config.ConfigError as e:
                raise app.UsageError(e.as_flag()) from None
    from ic_anogan.cli import common as cli
    from ic_anogan.core import atomic_io
    from ic_anogan.data import image_set, sources
    log_dir = _LOG_DIR.value or cli.default_log_dir(_MODEL_DIR.value)
    data_dir = run_config.data.data_dir
    for flag, folder in (("model_dir", _MODEL_DIR.value), ("log_dir", log_dir)):
        reason = atomic_io.unwritable_reason(folder)
        if reason:
            raise app.UsageError(f"--{flag}={folder}: {reason}")
    try:
        sources.resolve_source(data_dir)
    except image_set.DataError as e:
        cli.report_error(e)
        return 1
    from ic_anogan.training import cluster
    if not (_COLLECTIVE_TIMEOUT.value >= 0 and _COLLECTIVE_TIMEOUT.value != float("inf")):
        raise app.UsageError(f"--collective_timeout_seconds={_COLLECTIVE_TIMEOUT.value}: "
                             "expected a finite number >= 0")
    try:
        cluster.check(_STRATEGY.value)
    except cluster.ClusterConfigError as e:
        cli.report_error(e)
        return 1
    # TensorFlow only now: --help and refused flags or places answer at once.
    from ic_anogan.jobs import train_job
    from ic_anogan.training import distribution
    cli.setup_logging()
    cli.log_runtime()
    print(f"TensorBoard: tensorboard --logdir {log_dir}", flush=True)
    try:
        train_job.run(run_config, model_dir=_MODEL_DIR.value, log_dir=log_dir,
                      strategy=distribution.make_strategy(_STRATEGY.value,
                                                          _COLLECTIVE_TIMEOUT.value or None),
                      progress_factory=cli.StepProgress)
    except cli.expected_errors() as e:
        cli.report_error(e)
        return 1
    print(f"model written to {_MODEL_DIR.value}; TensorBoard logs in {log_dir}")
    return 0


def run() -> None:
    """The `ic-anogan-train` command."""
    from ic_anogan.cli import common
    common.run_command(main)


if __name__ == "__main__":
    run()
