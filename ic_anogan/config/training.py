"""Settings of the data, the networks, the GAN's training and the encoder's."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from ic_anogan.config.checks import is_finite, require, setting

SUPPORTED_IMAGE_SIZES = (16, 32, 64, 128, 256)
# IC packages (sop, qfp, mixed), and textured metal surfaces (texture).
SYNTHETIC_PACKAGES = ("sop", "qfp", "mixed", "texture")
SYNTHETIC_SPLITS = ("test", "validation")
# The source study's counts: 3277 good training images; 1100 good and 755
# short-fill test images.
STUDY_TRAIN_GOOD = 3277
STUDY_TEST_COUNTS = {"good": 1100, "short_fill": 755}
# The texture set's test split: the study's good count, 200 of each surface defect.
TEXTURE_TEST_COUNTS = {"good": 1100, "pit": 200, "crack": 200, "uneven": 200, "frayed": 200}
# Largest image decoded, in pixels (width x height): 100 megapixels holds any
# inspection camera's frame (a 12-bit 65 MP sensor is the largest common one)
# and stops a decompression bomb before it takes gigabytes.
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where images come from and how their files are read (ic_anogan/data/).

    Attributes:
      data_dir: a source spec (sources.resolve_source); None: the built-in
        synthetic IC packages.
      skip_corrupt: skip unreadable files (and count them) instead of failing.
      max_image_pixels: files above this many pixels are refused before decoding.
      synthetic_train_count: good synthetic images to train on.
      synthetic_package: sop, qfp or mixed synthetic packages, or texture
        (textured metal surfaces with pits, cracks, uneven and frayed regions).
      synthetic_counts: the synthetic images to score, per type.
      synthetic_split: test, or validation (images of their own, for tuning).
    """

    data_dir: Optional[str] = setting(
        None, help="Good images: a folder (recursive), an MVTec-style root (train/good), or "
        "idx:FOLDER:CLASS.", default_words="the built-in synthetic IC packages")
    skip_corrupt: bool = setting(False, help="Skip unreadable image files (and count them) "
                                 "instead of failing.")
    max_image_pixels: int = setting(
        DEFAULT_MAX_IMAGE_PIXELS, help="Image files above this many pixels (width x height) "
        "are refused, or skipped when skipping unreadable files, before they are decoded.")
    synthetic_train_count: int = setting(
        STUDY_TRAIN_GOOD, help="Good synthetic images to render when no image folder is given.")
    # None: sop for training; for scoring, the package the model was trained on.
    synthetic_package: Optional[str] = setting(
        None, choices=SYNTHETIC_PACKAGES, help="Synthetic images when no image folder is "
        "given: one IC package type (sop, qfp), as a line model sees, a mix of both (mixed), "
        "or textured metal surfaces (texture).")
    synthetic_counts: Optional[dict] = setting(
        None, help="The synthetic images to score, per type.",
        default_words="the study's split (the texture set's own types for texture)")
    synthetic_split: str = setting(
        "test", choices=SYNTHETIC_SPLITS, help="Synthetic split to score when no image folder "
        "is given; tune settings on 'validation'.")

    def __post_init__(self):
        require(isinstance(self.max_image_pixels, int) and self.max_image_pixels > 0,
                 "data.max_image_pixels", "a positive integer", self.max_image_pixels)
        require(isinstance(self.synthetic_train_count, int) and self.synthetic_train_count > 0,
                 "data.synthetic_train_count", "a positive integer", self.synthetic_train_count)
        require(self.synthetic_package is None or self.synthetic_package in SYNTHETIC_PACKAGES,
                 "data.synthetic_package", f"one of {SYNTHETIC_PACKAGES}", self.synthetic_package)
        require(self.synthetic_split in SYNTHETIC_SPLITS, "data.synthetic_split",
                 f"one of {SYNTHETIC_SPLITS}", self.synthetic_split)
        counts = self.synthetic_counts
        require(counts is None or (isinstance(counts, dict) and counts and all(
            isinstance(v, int) and v >= 0 for v in counts.values())), "data.synthetic_counts",
                 "type:count pairs with counts >= 0", counts)

    @property
    def package(self) -> str:
        """The synthetic package type to render."""
        return self.synthetic_package or "sop"

    @property
    def synthetic_test_counts(self) -> dict:
        """The synthetic images to score per type: as given, else the study's (the
        texture set's own types for texture)."""
        default = TEXTURE_TEST_COUNTS if self.package == "texture" else STUDY_TEST_COUNTS
        return dict(self.synthetic_counts or default)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes of the DCGAN.

    Attributes:
      image_size: side of the square grayscale image; sets the number of blocks.
      latent_dim: size of z.
      base_filters: filters of the generator's last and discriminator's first block.
    """

    image_size: int = setting(64, help="Image side: 16, 32, 64, 128 or 256.")
    latent_dim: int = setting(100, help="Size of z.")
    # None: chosen from the number of training images when training starts
    # (training_plan.py); a trained model's config always holds the number.
    base_filters: Optional[int] = setting(
        64, help="Filters of the outermost blocks.",
        default_words="64 (the study's) from 2000 training images up, 32 below")

    def __post_init__(self):
        require(self.image_size in SUPPORTED_IMAGE_SIZES, "model.image_size",
                 f"one of {SUPPORTED_IMAGE_SIZES}", self.image_size)
        require(isinstance(self.latent_dim, int) and self.latent_dim > 0,
                 "model.latent_dim", "a positive integer", self.latent_dim)
        require(self.base_filters is None
                 or (isinstance(self.base_filters, int) and self.base_filters > 0),
                 "model.base_filters", "a positive integer or None", self.base_filters)

    @property
    def num_blocks(self) -> int:
        """Number of stride-2 blocks between 4x4 and the image size."""
        return int(round(math.log2(self.image_size // 4)))


D_PENALTIES = ("none", "r1")
# Generator updates when neither epochs nor updates are given. A GAN needs
# thousands of updates whatever the data size: 25 epochs of 400 images are
# about 150, and G then draws one blurred average part.
DEFAULT_UPDATES = 3000
# An epoch (checkpoint, logs, model selection) is one pass over the images,
# but at least this many updates, so that small data sets do not pay the
# per-epoch costs every few updates.
MIN_UPDATES_PER_EPOCH = 50
# Model selection evaluates this many times over a run when its interval is
# not given.
SELECTION_EVALUATIONS = 10


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How the GAN is trained.

    Attributes:
      batch_size, learning_rate, beta_1, seed: DCGAN's Adam and batches.
      epochs: passes over the good images; None: the length is `updates`.
      updates: generator updates; None: DEFAULT_UPDATES (unless epochs is given).
      ema_decay: G's weights are averaged with this decay (warmed up as
        min(decay, (1 + t) / (10 + t)) at update t) and the average is what
        scoring and export use; 0 turns the average off.
      d_penalty: `r1` adds γ/2·‖∇D(x)‖² on real images to D's loss
        (Mescheder et al. 2018); `none` is the study's DCGAN.
      r1_gamma: γ of the R1 penalty.
      augment: DiffAugment (translation, cutout) on what D sees; None: as
        training_plan.py decides from the number of training images.
      keep_best: keep G and D of the evaluation with the lowest held-out
        reconstruction error, not the last epoch's. Needs the monitor.
      validation_fraction: good images held out (never trained on).
      monitor_every_epochs: every this many epochs a short latent search on
        held-out good images is logged to TensorBoard and drives keep_best;
        None: SELECTION_EVALUATIONS times per run; 0 turns it off.
      monitor_images, monitor_search_steps: that search's images and Γ.
    """

    batch_size: int = setting(64, help="Images per training step (per replica).")
    epochs: Optional[int] = setting(
        None, help="Training length in passes over the images, instead of updates.")
    updates: Optional[int] = setting(
        None, help="Generator updates (the training length). An epoch is one pass over the "
        "images, but at least 50 updates.", default_words=str(DEFAULT_UPDATES))
    learning_rate: float = setting(2e-4, help="Adam learning rate for G and D.")
    beta_1: float = setting(0.5, help="Adam beta_1 for G and D.")
    seed: int = setting(0, help="Seed for weights, noise, shuffling and the split.")
    ema_decay: float = setting(
        0.999, help="Decay of the moving average of G's weights that scoring uses (0: off, "
        "score the raw G).")
    d_penalty: str = setting("r1", choices=D_PENALTIES, help="Penalty on D: R1 on real images "
                             "(Mescheder et al. 2018) or none.")
    r1_gamma: float = setting(0.1, help="γ of the R1 penalty.")
    augment: Optional[bool] = setting(
        None, help="DiffAugment (translation, cutout) on what D sees.",
        default_words="off: it lowered detection at every data size measured")
    keep_best: bool = setting(
        True, help="Keep G and D of the monitor evaluation with the lowest held-out "
        "reconstruction error instead of the last epoch's.")
    validation_fraction: float = setting(
        0.1, help="Good images held out (never trained on) for validation and threshold "
        "calibration.")
    monitor_every_epochs: Optional[int] = setting(
        None, help="Search held-out good images every N epochs, log it and keep the best "
        "epoch; 0: off.", default_words=f"{SELECTION_EVALUATIONS} times per run")
    monitor_images: int = 64
    monitor_search_steps: int = setting(50, help="Steps of the monitor's search.")

    def __post_init__(self):
        require(self.batch_size > 0, "train.batch_size", "a positive integer", self.batch_size)
        require(self.epochs is None or (isinstance(self.epochs, int) and self.epochs > 0),
                 "train.epochs", "a positive integer or None", self.epochs)
        require(self.updates is None or (isinstance(self.updates, int) and self.updates > 0),
                 "train.updates", "a positive integer or None", self.updates)
        require(self.epochs is None or self.updates is None, "train.epochs",
                 f"no updates with it (updates={self.updates}): both set the training length; "
                 "give one", self.epochs)
        require(is_finite(self.learning_rate) and self.learning_rate > 0, "train.learning_rate",
                 "a finite positive number", self.learning_rate)
        require(0 <= self.beta_1 < 1, "train.beta_1", "a number in [0, 1)", self.beta_1)
        require(is_finite(self.ema_decay) and 0 <= self.ema_decay < 1, "train.ema_decay",
                 "a number in [0, 1)", self.ema_decay)
        require(self.d_penalty in D_PENALTIES, "train.d_penalty", f"one of {D_PENALTIES}",
                 self.d_penalty)
        require(is_finite(self.r1_gamma) and self.r1_gamma > 0, "train.r1_gamma",
                 "a finite positive number", self.r1_gamma)
        require(self.augment in (None, True, False), "train.augment", "true, false or None",
                 self.augment)
        require(0 <= self.validation_fraction < 1, "train.validation_fraction",
                 "a number in [0, 1)", self.validation_fraction)
        require(self.monitor_every_epochs is None or self.monitor_every_epochs >= 0,
                 "train.monitor_every_epochs", "an integer >= 0 or None", self.monitor_every_epochs)
        require(self.monitor_images > 0, "train.monitor_images", "a positive integer",
                 self.monitor_images)
        require(self.monitor_search_steps > 0, "train.monitor_search_steps",
                 "a positive integer", self.monitor_search_steps)

    def as_study_dcgan(self) -> "TrainConfig":
        """These settings with every addition to the study's DCGAN turned off."""
        return dataclasses.replace(self, ema_decay=0.0, d_penalty="none", augment=False,
                                   keep_best=False)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """How the encoder E (f-AnoGAN's izi_f, Schlegl et al. 2019) is trained.

    The loss per image is mean((x − G(E(x)))²) + κ·mean((f(x) − f(G(E(x))))²),
    G and D frozen.

    Attributes:
      epochs: passes over the good training images, each at least
        MIN_UPDATES_PER_EPOCH updates; 0 trains no encoder.
      feature_weight: κ, the weight of the feature residual.
      batch_size, learning_rate, beta_1: Adam on E's weights.
      seed: initial weights and shuffling.
      keep_best: keep the weights of the epoch with the lowest held-out loss
        (val_loss) rather than the last epoch's; the held-out loss of E
        swings from epoch to epoch (batch statistics against moving ones).
    """

    epochs: int = setting(20, help="Encoder training epochs: passes over the images, at "
                          "least 50 updates each.")
    feature_weight: float = setting(
        1.0, help="κ: weight of the feature residual in the encoder loss.")
    batch_size: int = setting(64, help="Images per encoder training step (per replica).")
    learning_rate: float = setting(2e-4, help="Adam learning rate of the encoder.")
    beta_1: float = 0.5
    seed: int = 0
    keep_best: bool = True

    def __post_init__(self):
        require(isinstance(self.epochs, int) and self.epochs > 0, "encoder.epochs",
                 "a positive integer", self.epochs)
        require(is_finite(self.feature_weight) and self.feature_weight >= 0,
                 "encoder.feature_weight", "a finite number >= 0", self.feature_weight)
        require(self.batch_size > 0, "encoder.batch_size", "a positive integer",
                 self.batch_size)
        require(is_finite(self.learning_rate) and self.learning_rate > 0,
                 "encoder.learning_rate", "a finite positive number", self.learning_rate)
        require(0 <= self.beta_1 < 1, "encoder.beta_1", "a number in [0, 1)", self.beta_1)
