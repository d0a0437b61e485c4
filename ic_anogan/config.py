"""Frozen configuration dataclasses, one per concern, with JSON round trips.

Every config validates itself on construction, so a bad value fails before any
work starts, with a message that names the field. The binaries map field names
one to one onto flag names, so a message naming the field names the flag too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Optional, Type, TypeVar

from ic_anogan import atomic_io

SUPPORTED_IMAGE_SIZES = (16, 32, 64, 128, 256)
SYNTHETIC_PACKAGES = ("sop", "qfp", "mixed")
SYNTHETIC_SPLITS = ("test", "validation")
# The source study's counts: 3277 good training images; 1100 good and 755
# short-fill test images.
STUDY_TRAIN_GOOD = 3277
STUDY_TEST_COUNTS = {"good": 1100, "short_fill": 755}
# Largest image decoded, in pixels (width x height): 100 megapixels holds any
# inspection camera's frame (a 12-bit 65 MP sensor is the largest common one)
# and stops a decompression bomb before it takes gigabytes.
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000

# How z is found for scoring (search.py):
#   search: the study's Γ-step search from random starts;
#   encoder: z = E(x), one forward pass, no search;
#   encoder_search: Γ steps of the same search started from E(x).
SCORING_MODES = ("search", "encoder", "encoder_search")
# Γ used when a mode's settings are not given anywhere else; encoder_search's
# was chosen on the synthetic validation split (docs/benchmarks.md, "Image scores").
DEFAULT_STEPS = {"search": 500, "encoder": 0, "encoder_search": 50}


def default_mode(has_encoder: bool) -> str:
    """The scoring mode used when none is asked for.

    encoder_search when the model has an encoder, as measured in
    docs/benchmarks.md ("Scoring modes"); otherwise the study's search.
    """
    return "encoder_search" if has_encoder else "search"

# How an image is judged (anomaly_maps.py):
#   study: A(x) = L(z_Γ), the residual summed over the whole image;
#   map_max: the maximum of the smoothed anomaly map, standardised per pixel
#     by good parts' statistics;
#   map_topk: the mean of the top MapConfig.top_fraction of that map.
IMAGE_SCORES = ("study", "map_max", "map_topk")
MAP_SCORES = IMAGE_SCORES[1:]
# Chosen on validation data only (docs/benchmarks.md, "Image scores").
DEFAULT_IMAGE_SCORE = "map_max"
MAP_KERNELS = ("box", "gaussian")


def map_score_name(image_score: str) -> str:
    """The map score reported as `map_score`: the decision's own when it is a map score,
    else the default map score."""
    return image_score if image_score in MAP_SCORES else DEFAULT_IMAGE_SCORE

MAP_RESIDUALS = ("absolute", "signed")
# Shifts beyond a few pixels would forgive real defects, not pose.
MAX_ALIGNMENT_TOLERANCE = 3
# What map settings added after the first map statistics mean when a stored
# record lacks them: the behaviour of the version that wrote it.
MAP_LEGACY_DEFAULTS = {"alignment_tolerance": 0, "neighbours": 0}

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field.

    Attributes:
      field, value, expected: what was wrong, so that a binary can name its
        own flag when the flag's name differs from the field's.
    """

    def __init__(self, field: str, value: Any, expected: str):
        super().__init__(f"{field}={value!r}: expected {expected}")
        self.field, self.value, self.expected = field, value, expected

    def as_flag(self, renames: Optional[dict] = None) -> str:
        """The message as a usage error naming the flag (`renames`: field -> flag)."""
        flag = (renames or {}).get(self.field, self.field)
        return f"--{flag}={self.value!r}: expected {self.expected}"


def _require(condition: bool, field: str, expected: str, value: Any) -> None:
    if not condition:
        raise ConfigError(field, value, expected)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where images come from and how their files are read (data.py).

    Attributes:
      data_dir: a source spec (sources.resolve_source); None: the built-in
        synthetic IC packages.
      skip_corrupt: skip unreadable files (and count them) instead of failing.
      max_image_pixels: files above this many pixels are refused before decoding.
      synthetic_train_count: good synthetic images to train on.
      synthetic_package: sop, qfp or mixed synthetic packages.
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
        _require(isinstance(self.max_image_pixels, int) and self.max_image_pixels > 0,
                 "max_image_pixels", "a positive integer", self.max_image_pixels)
        _require(isinstance(self.synthetic_train_count, int) and self.synthetic_train_count > 0,
                 "synthetic_train_count", "a positive integer", self.synthetic_train_count)
        _require(self.synthetic_package is None or self.synthetic_package in SYNTHETIC_PACKAGES,
                 "synthetic_package", f"one of {SYNTHETIC_PACKAGES}", self.synthetic_package)
        _require(self.synthetic_split in SYNTHETIC_SPLITS, "synthetic_split",
                 f"one of {SYNTHETIC_SPLITS}", self.synthetic_split)
        counts = self.synthetic_counts
        _require(counts is None or (isinstance(counts, dict) and counts and all(
            isinstance(v, int) and v >= 0 for v in counts.values())), "synthetic_counts",
                 "type:count pairs with counts >= 0", counts)

    @property
    def package(self) -> str:
        """The synthetic package type to render."""
        return self.synthetic_package or "sop"

    @property
    def synthetic_test_counts(self) -> dict:
        """The synthetic images to score per type: as given, else the study's."""
        return dict(self.synthetic_counts or STUDY_TEST_COUNTS)


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
        _require(self.image_size in SUPPORTED_IMAGE_SIZES, "image_size",
                 f"one of {SUPPORTED_IMAGE_SIZES}", self.image_size)
        _require(isinstance(self.latent_dim, int) and self.latent_dim > 0,
                 "latent_dim", "a positive integer", self.latent_dim)
        _require(self.base_filters is None
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
        _require(self.batch_size > 0, "batch_size", "a positive integer", self.batch_size)
        _require(self.epochs is None or (isinstance(self.epochs, int) and self.epochs > 0),
                 "epochs", "a positive integer or None", self.epochs)
        _require(self.updates is None or (isinstance(self.updates, int) and self.updates > 0),
                 "updates", "a positive integer or None", self.updates)
        _require(self.epochs is None or self.updates is None, "epochs",
                 f"no updates with it (updates={self.updates}): both set the training length; "
                 "give one", self.epochs)
        _require(_finite(self.learning_rate) and self.learning_rate > 0, "learning_rate",
                 "a finite positive number", self.learning_rate)
        _require(0 <= self.beta_1 < 1, "beta_1", "a number in [0, 1)", self.beta_1)
        _require(_finite(self.ema_decay) and 0 <= self.ema_decay < 1, "ema_decay",
                 "a number in [0, 1)", self.ema_decay)
        _require(self.d_penalty in D_PENALTIES, "d_penalty", f"one of {D_PENALTIES}",
                 self.d_penalty)
        _require(_finite(self.r1_gamma) and self.r1_gamma > 0, "r1_gamma",
                 "a finite positive number", self.r1_gamma)
        _require(self.augment in (None, True, False), "augment", "true, false or None",
                 self.augment)
        _require(0 <= self.validation_fraction < 1, "validation_fraction",
                 "a number in [0, 1)", self.validation_fraction)
        _require(self.monitor_every_epochs is None or self.monitor_every_epochs >= 0,
                 "monitor_every_epochs", "an integer >= 0 or None", self.monitor_every_epochs)
        _require(self.monitor_images > 0, "monitor_images", "a positive integer",
                 self.monitor_images)
        _require(self.monitor_search_steps > 0, "monitor_search_steps",
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
        _require(isinstance(self.epochs, int) and self.epochs > 0, "encoder_epochs",
                 "a positive integer", self.epochs)
        _require(_finite(self.feature_weight) and self.feature_weight >= 0,
                 "encoder_feature_weight", "a finite number >= 0", self.feature_weight)
        _require(self.batch_size > 0, "encoder_batch_size", "a positive integer",
                 self.batch_size)
        _require(_finite(self.learning_rate) and self.learning_rate > 0,
                 "encoder_learning_rate", "a finite positive number", self.learning_rate)
        _require(0 <= self.beta_1 < 1, "encoder_beta_1", "a number in [0, 1)", self.beta_1)


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """How a score is computed: the AnoGAN latent search (Schlegl et al. 2017).

    Attributes:
      mode: one of SCORING_MODES: where the search starts (random or E(x));
        `encoder` takes no steps (steps must be 0, restarts 1).
      steps: Γ, gradient steps on z.
      discrimination_weight: λ in L = (1-λ)·R + λ·D.
      learning_rate: Adam step size on z.
      beta_1, beta_2, epsilon: Adam constants.
      restarts: random starts per image; the start with the lowest final loss wins.
      clip_z: if set, z is clipped to [-clip_z, clip_z] after every step.
      seed: seed of the stateless RNG that draws the starting points.
      jit_compile: compile the search with XLA.
      fold_batch_norm: evaluate G and f with batch norm folded into the
        convolutions (same function, faster); off runs the Keras layers.
    """

    steps: int = 500
    discrimination_weight: float = 0.1
    learning_rate: float = 0.05
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    restarts: int = 1
    clip_z: Optional[float] = None
    seed: int = 0
    jit_compile: bool = False
    fold_batch_norm: bool = True
    mode: str = "search"

    def __post_init__(self):
        _require(self.mode in SCORING_MODES, "mode", f"one of {SCORING_MODES}", self.mode)
        if self.mode == "encoder":
            _require(self.steps == 0 and self.restarts == 1, "mode",
                     "search_steps=0 and restarts=1 with mode 'encoder' (it scores E(x) "
                     "without a search; use 'encoder_search' to refine it)",
                     f"encoder with search_steps={self.steps}, restarts={self.restarts}")
        _require(isinstance(self.steps, int) and self.steps >= 0, "search_steps",
                 "an integer >= 0", self.steps)
        _require(0.0 <= self.discrimination_weight <= 1.0, "discrimination_weight",
                 "a number in [0, 1]", self.discrimination_weight)
        _require(_finite(self.learning_rate) and self.learning_rate > 0, "learning_rate",
                 "a finite positive number", self.learning_rate)
        _require(0 <= self.beta_1 < 1 and 0 <= self.beta_2 < 1, "beta_1/beta_2",
                 "numbers in [0, 1)", (self.beta_1, self.beta_2))
        _require(self.epsilon > 0, "epsilon", "a positive number", self.epsilon)
        _require(isinstance(self.restarts, int) and self.restarts > 0, "restarts",
                 "a positive integer", self.restarts)
        _require(self.clip_z is None or (_finite(self.clip_z) and self.clip_z > 0), "clip_z",
                 "a finite positive number or None", self.clip_z)


@dataclasses.dataclass(frozen=True)
class MapConfig:
    """How anomaly maps become image scores and defect masks (anomaly_maps.py).

    Attributes:
      residual: `absolute` smooths |x − G(z)|; `signed` smooths x − G(z) and
        standardises it two-sided, so a dark void and a bright short fill
        both stand out while zero-mean noise averages away.
      kernel: smoothing kernel, `box` or `gaussian` (σ = kernel_size / 4).
      kernel_size: odd side of the kernel in pixels; 1 turns smoothing off.
      prior_images: weight, in images, of the image-wide mean and variance
        that every pixel's statistics are shrunk toward; keeps statistics
        from a few dozen good images sane.
      std_floor: a pixel's deviation is at least this fraction of the
        image-wide deviation, so a pixel that happened to vary little in the
        good images cannot blow its standardised value up.
      top_fraction: share of the pixels whose mean is `map_topk`.
      pixel_percentile: the defect-mask threshold is this percentile of the
        good images' standardised pixels.
      folds: good images are split into this many folds; each fold is scored
        with statistics from the others, so thresholds see unseen-image
        scores, not in-sample ones.
      alignment_tolerance: each pixel's residual is the smallest |x − G(z)|
        over shifts of G(z) by up to this many pixels (0: the study's
        residual). An edge G draws a pixel off stops lighting up; a void, a
        scratch or a bite does not vanish under a one-pixel shift.
      neighbours: 0 standardises every image by one set of per-pixel
        statistics; k > 0 by the statistics of the k calibration images
        nearest to it in latent space, shrunk toward the overall ones, so
        that good parts of several looks (package types, suppliers) are
        each judged against their own kind.
    """

    # Chosen on the synthetic validation split (docs/benchmarks.md, "Image scores";
    # alignment_tolerance and neighbours: "Small defects at the threshold").
    residual: str = "absolute"
    kernel: str = "gaussian"
    kernel_size: int = 3
    prior_images: float = 10.0
    std_floor: float = 0.1
    top_fraction: float = 0.002
    pixel_percentile: float = 99.9
    folds: int = 5
    alignment_tolerance: int = 1
    neighbours: int = 30

    def __post_init__(self):
        _require(self.residual in MAP_RESIDUALS, "map_residual", f"one of {MAP_RESIDUALS}",
                 self.residual)
        _require(self.kernel in MAP_KERNELS, "map_kernel", f"one of {MAP_KERNELS}", self.kernel)
        _require(isinstance(self.kernel_size, int) and self.kernel_size >= 1
                 and self.kernel_size % 2 == 1, "map_kernel_size", "an odd integer >= 1",
                 self.kernel_size)
        _require(_finite(self.prior_images) and self.prior_images >= 0, "map_prior_images",
                 "a finite number >= 0", self.prior_images)
        _require(_finite(self.std_floor) and 0 < self.std_floor <= 1, "map_std_floor",
                 "a number in (0, 1]", self.std_floor)
        _require(_finite(self.top_fraction) and 0 < self.top_fraction <= 1,
                 "map_top_fraction", "a number in (0, 1]", self.top_fraction)
        _require(_finite(self.pixel_percentile) and 0 < self.pixel_percentile <= 100,
                 "pixel_percentile", "a number in (0, 100]", self.pixel_percentile)
        _require(isinstance(self.folds, int) and self.folds >= 2, "map_folds",
                 "an integer >= 2", self.folds)
        _require(isinstance(self.alignment_tolerance, int)
                 and not isinstance(self.alignment_tolerance, bool)
                 and 0 <= self.alignment_tolerance <= MAX_ALIGNMENT_TOLERANCE,
                 "map_alignment_tolerance", f"an integer from 0 to {MAX_ALIGNMENT_TOLERANCE}",
                 self.alignment_tolerance)
        _require(isinstance(self.neighbours, int) and not isinstance(self.neighbours, bool)
                 and self.neighbours >= 0, "map_neighbours", "an integer >= 0",
                 self.neighbours)

    def check_image_size(self, image_size: int) -> None:
        """Refuses a smoothing kernel wider than the images it smooths (a ConfigError
        naming map_kernel_size), before any training or search."""
        _require(self.kernel_size <= image_size, "map_kernel_size",
                 f"an odd integer no larger than the image size {image_size}",
                 self.kernel_size)
        _require(2 * self.alignment_tolerance < image_size, "map_alignment_tolerance",
                 f"less than half the image size {image_size}", self.alignment_tolerance)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def search_config_for_mode(mode: str, base: Optional[SearchConfig] = None,
                           steps: Optional[int] = None) -> SearchConfig:
    """`base`'s settings (λ, Adam, seed, ...) scoring in `mode`.

    Γ is `steps` if given, else base's Γ when base is already in `mode`, else
    the mode's default; `encoder` always gets Γ = 0 and one start.
    """
    base = base or SearchConfig()
    _require(mode in SCORING_MODES, "mode", f"one of {SCORING_MODES}", mode)
    if mode == "encoder":
        return dataclasses.replace(base, mode=mode, steps=0, restarts=1)
    if steps is None:
        steps = base.steps if base.mode == mode else DEFAULT_STEPS[mode]
    return dataclasses.replace(base, mode=mode, steps=steps)


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    """How the held-out good images set each mode's thresholds and map statistics.

    Attributes:
      encoder_search_steps: Γ of the encoder_search mode.
      percentile: threshold = this percentile of the held-out good scores.
      batch_size: images per search call.
      map: how the good parts' map statistics are computed; None: study score only.
    """

    encoder_search_steps: int = DEFAULT_STEPS["encoder_search"]
    percentile: float = 99.0
    batch_size: int = 64
    map: Optional[MapConfig] = MapConfig()

    def __post_init__(self):
        _require(isinstance(self.encoder_search_steps, int)
                 and self.encoder_search_steps >= 0, "encoder_search_steps",
                 "an integer >= 0", self.encoder_search_steps)
        _require(_finite(self.percentile) and 0 < self.percentile <= 100,
                 "calibration_percentile", "a number in (0, 100]", self.percentile)
        _require(isinstance(self.batch_size, int) and self.batch_size > 0,
                 "search_batch_size", "a positive integer", self.batch_size)

    def for_mode(self, mode: str, search: SearchConfig) -> SearchConfig:
        """`search`'s settings in `mode`, with this calibration's Γ for encoder_search."""
        return search_config_for_mode(
            mode, search, steps=self.encoder_search_steps if mode == "encoder_search" else None)



def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def from_dict(cls: Type[T], values: dict) -> T:
    """Builds `cls` from a dict, ignoring unknown keys from newer versions."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def write_json(path: str, payload: dict) -> None:
    """Writes JSON atomically (temp file, then rename)."""
    atomic_io.write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: str) -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: file not found")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
