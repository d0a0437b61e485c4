"""The training job as one call: GAN, then encoder, then calibration of every mode.

The train command (cli/train.py) builds the configs from its flags and
calls `train_and_calibrate`; a Python user calls it the same way. Scoring
and export are score_job.py's.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Optional

import tensorflow as tf

from ic_anogan import config as config_lib
from ic_anogan.config import (CalibrationConfig, DataConfig, EncoderConfig, ModelConfig,
                              RunConfig, SearchConfig, TrainConfig)
from ic_anogan.data import loading
from ic_anogan.data.image_set import ImageSet
from ic_anogan.jobs.calibrate import ProgressFactory, calibrate_modes
from ic_anogan.models import model_dir as model_dir_lib
from ic_anogan.training import distribution, encoder as encoder_train
from ic_anogan.training.gan import TrainResult, train

log = logging.getLogger(__name__)



@dataclasses.dataclass
class TrainJobResult:
    """What `train_and_calibrate` did."""

    gan: TrainResult
    encoder: Optional[encoder_train.EncoderResult]
    # mode -> the calibration record written (empty when not calibrated).
    calibration: dict


def _verbosity() -> int:
    # A redrawn bar per epoch on a terminal; one line per epoch in a log file.
    return 1 if sys.stdout.isatty() else 2


def train_and_calibrate(*, model_dir: str, log_dir: str, model_config: ModelConfig,
                        train_config: TrainConfig, data_config: DataConfig = DataConfig(),
                        search_config: SearchConfig = SearchConfig(),
                        encoder_config: Optional[EncoderConfig] = EncoderConfig(),
                        calibration_config: Optional[CalibrationConfig] = CalibrationConfig(),
                        strategy: Optional[tf.distribute.Strategy] = None,
                        progress_factory: Optional[ProgressFactory] = None,
                        verbose: Optional[int] = None) -> TrainJobResult:
    """Trains the GAN, then the encoder (unless `encoder_config` is None), then
    calibrates every mode the model supports on the held-out good images
    (unless `calibration_config` is None). `search_config` is the search of
    the `search` mode (Γ, λ, ...); the encoder modes take its settings with
    their own Γ, and the training monitor its λ and learning rate.

    Raises:
      DataError, ModelDirError, NonFiniteLossError: as training.gan.train and
      encoder_train.train_encoder raise them.
      ConfigError: the map smoothing is wider than the images (before training).
      distribution.WorkerLostError: a multi-worker peer went away.
    """
    if calibration_config is not None and calibration_config.map is not None:
        calibration_config.map.check_image_size(model_config.image_size)
    strategy = strategy or tf.distribute.get_strategy()
    try:
        gan, encoded = _train_networks(
            model_dir=model_dir, log_dir=log_dir, model_config=model_config,
            train_config=train_config, data_config=data_config, search_config=search_config,
            encoder_config=encoder_config, strategy=strategy,
            verbose=_verbosity() if verbose is None else verbose)
    except Exception as e:  # noqa: BLE001 - only a lost peer is re-raised differently
        lost = distribution.lost_worker_error(e, strategy)
        if lost is None:
            raise
        raise lost from e
    records = {}
    if not distribution.is_chief(strategy):
        return TrainJobResult(gan, encoded, records)  # calibration is the chief's
    # What was asked, beside what training resolved from it (config.json's `model`).
    model_dir_lib.record(model_dir, run=RunConfig(
        model_config, train_config, data_config, search_config, encoder_config,
        calibration_config).to_dict())
    if calibration_config is not None and len(gan.heldout):
        if len(gan.heldout) < loading.MIN_CALIBRATION_IMAGES:
            log.warning("the thresholds rest on %d held-out good images only: the %gth "
                        "percentile of so few scores is about their maximum, and the false-"
                        "reject rate on new parts may be far from %g%%; recalibrate on at "
                        "least %d good images the model never trained on",
                        len(gan.heldout), calibration_config.percentile,
                        100 - calibration_config.percentile, loading.MIN_CALIBRATION_IMAGES)
        records = calibrate_all(model_dir, gan.heldout, search_config, calibration_config,
                                log_dir,
                                f"held-out {len(gan.heldout)} good images of "
                                f"{data_config.data_dir or 'synthetic'}", progress_factory)
    elif calibration_config is not None:
        log.warning("no held-out images (validation_fraction=0): threshold not calibrated")
    return TrainJobResult(gan, encoded, records)


def run(config: RunConfig, *, model_dir: str, log_dir: str,
        strategy: Optional[tf.distribute.Strategy] = None,
        progress_factory: Optional[ProgressFactory] = None,
        verbose: Optional[int] = None) -> TrainJobResult:
    """`train_and_calibrate` with the settings of one `RunConfig`."""
    return train_and_calibrate(
        model_dir=model_dir, log_dir=log_dir, model_config=config.model,
        train_config=config.train, data_config=config.data, search_config=config.search,
        encoder_config=config.encoder, calibration_config=config.calibration,
        strategy=strategy, progress_factory=progress_factory, verbose=verbose)


def _train_networks(*, model_dir, log_dir, model_config, train_config, data_config,
                    search_config, encoder_config, strategy, verbose) -> tuple:
    """The GAN, then the encoder: (TrainResult, encoder result or None)."""
    log.info("model %s", config_lib.to_dict(model_config))
    log.info("training %s", config_lib.to_dict(train_config))
    gan = train(model_dir=model_dir, log_dir=log_dir, model_config=model_config,
                      train_config=train_config, data_config=data_config,
                      search_config=search_config, strategy=strategy, verbose=verbose)
    last = {k: v[-1] for k, v in gan.history.items() if v}
    log.info("trained %d GAN epochs (%d updates) in %.0f s; kept epoch %d; last epoch: %s",
             gan.epochs_run, gan.epochs_run * gan.plan.updates_per_epoch, gan.seconds,
             gan.kept_epoch, ", ".join(f"{k}={v:.4f}" for k, v in sorted(last.items())))
    # The encoder reads the GAN the chief has just written.
    distribution.barrier(strategy)
    encoded = None
    if encoder_config is not None:
        log.info("encoder %s", config_lib.to_dict(encoder_config))
        encoded = encoder_train.train_encoder(
            model_dir=model_dir, log_dir=log_dir, encoder_config=encoder_config,
            train_set=gan.train_set, heldout=gan.heldout, strategy=strategy, verbose=verbose)
        last = {k: v[-1] for k, v in encoded.history.items() if v}
        log.info("trained %d encoder epochs in %.0f s; last epoch: %s", encoded.epochs_run,
                 encoded.seconds, ", ".join(f"{k}={v:.4f}" for k, v in sorted(last.items())))
        held_out = encoded.history.get("val_loss", [])
        if len(held_out) >= encoded.kept_epoch > 0:
            log.info("kept the encoder of epoch %d (lowest held-out loss: %.4f)",
                     encoded.kept_epoch, held_out[encoded.kept_epoch - 1])

    return gan, encoded


def calibrate_all(model_dir: str, good: ImageSet, search_config: SearchConfig,
                  calibration_config: CalibrationConfig,
                  log_dir: Optional[str], source: str,
                  progress_factory: Optional[ProgressFactory] = None) -> dict:
    """Calibrates every mode the model in `model_dir` supports on `good`; returns the records."""
    model = model_dir_lib.load_trained_model(model_dir)
    settings = {mode: calibration_config.for_mode(mode, search_config)
                for mode in model.scoring_modes}
    return calibrate_modes(model, good, settings, calibration_config.percentile,
                           calibration_config.batch_size, calibration_config.map, source,
                           log_dir, progress_factory, images_name="held-out good images",
                           threshold_rule=calibration_config.threshold_rule,
                           outliers=calibration_config.outliers)
