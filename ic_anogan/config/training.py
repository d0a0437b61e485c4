"""Settings of the data, the networks, the GAN's training and the encoder's."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from ic_anogan.config.checks import is_finite, require

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

    data_dir: Optional[str] = None
    skip_corrupt: bool = False
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    synthetic_train_count: int = STUDY_TRAIN_GOOD
    # None: sop for training; for scoring, the package the model was trained on.
    synthetic_package: Optional[str] = None
    synthetic_counts: Optional[dict] = None
    synthetic_split: str = "test"

    def __post_init__(self):
        require(isinstance(self.max_image_pixels, int) and self.max_image_pixels > 0,
                 "max_image_pixels", "a positive integer", self.max_image_pixels)
        require(isinstance(self.synthetic_train_count, int) and self.synthetic_train_count > 0,
                 "synthetic_train_count", "a positive integer", self.synthetic_train_count)
        require(self.synthetic_package is None or self.synthetic_package in SYNTHETIC_PACKAGES,
                 "synthetic_package", f"one of {SYNTHETIC_PACKAGES}", self.synthetic_package)
        require(self.synthetic_split in SYNTHETIC_SPLITS, "synthetic_split",
                 f"one of {SYNTHETIC_SPLITS}", self.synthetic_split)
        counts = self.synthetic_counts
        require(counts is None or (isinstance(counts, dict) and counts and all(
            isinstance(v, int) and v >= 0 for v in counts.values())), "synthetic_counts",
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

    image_size: int = 64
    latent_dim: int = 100
    # None: chosen from the number of training images when training starts
    # (training_plan.py); a trained model's config always holds the number.
    base_filters: Optional[int] = 64

    def __post_init__(self):
        require(self.image_size in SUPPORTED_IMAGE_SIZES, "image_size",
                 f"one of {SUPPORTED_IMAGE_SIZES}", self.image_size)
        require(isinstance(self.latent_dim, int) and self.latent_dim > 0,
                 "latent_dim", "a positive integer", self.latent_dim)
        require(self.base_filters is None
                 or (isinstance(self.base_filters, int) and self.base_filters > 0),
                 "base_filters", "a positive integer or None", self.base_filters)

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

    batch_size: int = 64
    epochs: Optional[int] = None
    updates: Optional[int] = None
    learning_rate: float = 2e-4
    beta_1: float = 0.5
    seed: int = 0
    ema_decay: float = 0.999
    d_penalty: str = "r1"
    r1_gamma: float = 0.1
    augment: Optional[bool] = None
    keep_best: bool = True
    validation_fraction: float = 0.1
    monitor_every_epochs: Optional[int] = None
    monitor_images: int = 64
    monitor_search_steps: int = 50

    def __post_init__(self):
        require(self.batch_size > 0, "batch_size", "a positive integer", self.batch_size)
        require(self.epochs is None or (isinstance(self.epochs, int) and self.epochs > 0),
                 "epochs", "a positive integer or None", self.epochs)
        require(self.updates is None or (isinstance(self.updates, int) and self.updates > 0),
                 "updates", "a positive integer or None", self.updates)
        require(self.epochs is None or self.updates is None, "epochs",
                 f"no updates with it (updates={self.updates}): both set the training length; "
                 "give one", self.epochs)
        require(is_finite(self.learning_rate) and self.learning_rate > 0, "learning_rate",
                 "a finite positive number", self.learning_rate)
        require(0 <= self.beta_1 < 1, "beta_1", "a number in [0, 1)", self.beta_1)
        require(is_finite(self.ema_decay) and 0 <= self.ema_decay < 1, "ema_decay",
                 "a number in [0, 1)", self.ema_decay)
        require(self.d_penalty in D_PENALTIES, "d_penalty", f"one of {D_PENALTIES}",
                 self.d_penalty)
        require(is_finite(self.r1_gamma) and self.r1_gamma > 0, "r1_gamma",
                 "a finite positive number", self.r1_gamma)
        require(self.augment in (None, True, False), "augment", "true, false or None",
                 self.augment)
        require(0 <= self.validation_fraction < 1, "validation_fraction",
                 "a number in [0, 1)", self.validation_fraction)
        require(self.monitor_every_epochs is None or self.monitor_every_epochs >= 0,
                 "monitor_every_epochs", "an integer >= 0 or None", self.monitor_every_epochs)
        require(self.monitor_images > 0, "monitor_images", "a positive integer",
                 self.monitor_images)
        require(self.monitor_search_steps > 0, "monitor_search_steps",
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

    epochs: int = 20
    feature_weight: float = 1.0
    batch_size: int = 64
    learning_rate: float = 2e-4
    beta_1: float = 0.5
    seed: int = 0
    keep_best: bool = True

    def __post_init__(self):
        require(isinstance(self.epochs, int) and self.epochs > 0, "encoder_epochs",
                 "a positive integer", self.epochs)
        require(is_finite(self.feature_weight) and self.feature_weight >= 0,
                 "encoder_feature_weight", "a finite number >= 0", self.feature_weight)
        require(self.batch_size > 0, "encoder_batch_size", "a positive integer",
                 self.batch_size)
        require(is_finite(self.learning_rate) and self.learning_rate > 0,
                 "encoder_learning_rate", "a finite positive number", self.learning_rate)
        require(0 <= self.beta_1 < 1, "encoder_beta_1", "a number in [0, 1)", self.beta_1)
