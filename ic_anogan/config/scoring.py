"""Settings of a score: the latent search and the anomaly map (calibration: calibration.py)."""

from __future__ import annotations

import dataclasses
from typing import Optional

from ic_anogan.config.checks import is_finite, require
from ic_anogan.config.modes import DEFAULT_STEPS, SCORING_MODES, Mode

MAP_KERNELS = ("box", "gaussian")


# How x and G(z) are compared (scoring/comparisons.py): intensity, or structure.
MAP_RESIDUALS = ("absolute", "signed", "gradient", "ssim")
# Coarser scales of the standardised map (scoring/area_scales.py): σ up to 2^4
# pixels per 64 of the side, a quarter of the image.
MAX_AREA_SCALES = 4

# Shifts beyond a few pixels would forgive real defects, not pose.
MAX_ALIGNMENT_TOLERANCE = 3
# What map settings added after the first map statistics mean when a stored
# record lacks them: the behaviour of the version that wrote it.
MAP_LEGACY_DEFAULTS = {"alignment_tolerance": 0, "neighbours": 0, "area_scales": 0}
# The map settings MapConfig.resolve chooses from the data when they are not given.
MAP_SETTINGS_FROM_DATA = ("alignment_tolerance", "neighbours")
# The alignment tolerance forgives one pixel per this many pixels of the image's
# side: G's misplacement of an edge scales with the image, and at 32 px one pixel
# is already a bite's edge.
PIXELS_PER_TOLERANCE = 64
# Neighbour statistics: at most this many neighbours and at most the images each
# cross-fitted fold's statistics rest on (the thresholds are set on those folds,
# so more would be a number the thresholds never saw), and none when a fold has
# fewer than MIN_NEIGHBOURS images (per-image statistics from fewer are noise).
# Measured on the synthetic validation split at 32 and 64 px from 200 to 3277
# images, neighbours helped at every size, even when they were the whole fold
# (docs/scoring.md, "Thresholds from few images").
MAX_NEIGHBOURS = 30
MIN_NEIGHBOURS = 5
# A neighbour count beyond this many images cannot be meant: statistics keep at
# most this many references (map_calibration.MAX_REFERENCE_IMAGES).
MAX_NEIGHBOURS_ASKED = 1024


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

    Everything here changes the score, so a calibration records all of it; how
    the same score is computed is `SearchRuntime`'s.
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
    mode: str = Mode.SEARCH.value

    def __post_init__(self):
        require(self.mode in SCORING_MODES, "mode", f"one of {SCORING_MODES}", self.mode)
        if self.mode == Mode.ENCODER:
            require(self.steps == 0 and self.restarts == 1, "mode",
                     "search_steps=0 and restarts=1 with mode 'encoder' (it scores E(x) "
                     "without a search; use 'encoder_search' to refine it)",
                     f"encoder with search_steps={self.steps}, restarts={self.restarts}")
        require(isinstance(self.steps, int) and self.steps >= 0, "search_steps",
                 "an integer >= 0", self.steps)
        require(0.0 <= self.discrimination_weight <= 1.0, "discrimination_weight",
                 "a number in [0, 1]", self.discrimination_weight)
        require(is_finite(self.learning_rate) and self.learning_rate > 0, "learning_rate",
                 "a finite positive number", self.learning_rate)
        require(0 <= self.beta_1 < 1 and 0 <= self.beta_2 < 1, "beta_1/beta_2",
                 "numbers in [0, 1)", (self.beta_1, self.beta_2))
        require(self.epsilon > 0, "epsilon", "a positive number", self.epsilon)
        require(isinstance(self.restarts, int) and self.restarts > 0, "restarts",
                 "a positive integer", self.restarts)
        require(self.clip_z is None or (is_finite(self.clip_z) and self.clip_z > 0), "clip_z",
                 "a finite positive number or None", self.clip_z)


SCORE_DEFINING = tuple(field.name for field in dataclasses.fields(SearchConfig))


@dataclasses.dataclass(frozen=True)
class SearchRuntime:
    """How a search runs, never what it computes: switches that leave the score as it is
    (to float rounding), so calibrations and exports do not record them.

    Attributes:
      jit_compile: compile the search with XLA.
      fold_batch_norm: evaluate G and f with batch norm folded into the
        convolutions (same function, faster); off runs the Keras layers.
    """

    jit_compile: bool = False
    fold_batch_norm: bool = True


@dataclasses.dataclass(frozen=True)
class MapConfig:
    """How anomaly maps become image scores and defect masks (anomaly_maps.py).

    Attributes:
      residual: `absolute` smooths |x − G(z)|; `signed` smooths x − G(z) and
        standardises it two-sided, so a dark void and a bright short fill
        both stand out while zero-mean noise averages away; `gradient`
        (1 − multi-scale gradient-magnitude similarity) and `ssim` (1 − local
        SSIM) compare structure, not brightness, for textured surfaces
        (scoring/comparisons.py).
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
        scratch or a bite does not vanish under a one-pixel shift. None:
        from the image size (`resolve`: one pixel per 64 of the side).
      neighbours: 0 standardises every image by one set of per-pixel
        statistics; k > 0 by the statistics of the k calibration images
        nearest to it in latent space, shrunk toward the overall ones, so
        that good parts of several looks (package types, suppliers) are
        each judged against their own kind. None: from the number of
        calibration images (`resolve`).
      area_scales: J > 0 also smooths the standardised map at J coarser
        scales (σ = 2, 4, 8, ... px per 64 of the side), puts each in units
        of how good images' maxima vary at that scale, and reads the maximum
        over the scales (scoring/area_scales.py): a large faint region wins
        at a coarse scale, a small defect still at the fine one. 0: one scale.
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
    alignment_tolerance: Optional[int] = None
    neighbours: Optional[int] = None
    area_scales: int = 0

    def __post_init__(self):
        require(self.residual in MAP_RESIDUALS, "map_residual", f"one of {MAP_RESIDUALS}",
                 self.residual)
        require(self.kernel in MAP_KERNELS, "map_kernel", f"one of {MAP_KERNELS}", self.kernel)
        require(isinstance(self.kernel_size, int) and self.kernel_size >= 1
                 and self.kernel_size % 2 == 1, "map_kernel_size", "an odd integer >= 1",
                 self.kernel_size)
        require(is_finite(self.prior_images) and self.prior_images >= 0, "map_prior_images",
                 "a finite number >= 0", self.prior_images)
        require(is_finite(self.std_floor) and 0 < self.std_floor <= 1, "map_std_floor",
                 "a number in (0, 1]", self.std_floor)
        require(is_finite(self.top_fraction) and 0 < self.top_fraction <= 1,
                 "map_top_fraction", "a number in (0, 1]", self.top_fraction)
        require(is_finite(self.pixel_percentile) and 0 < self.pixel_percentile <= 100,
                 "pixel_percentile", "a number in (0, 100]", self.pixel_percentile)
        require(isinstance(self.folds, int) and self.folds >= 2, "map_folds",
                 "an integer >= 2", self.folds)
        require(self.alignment_tolerance is None or (
            isinstance(self.alignment_tolerance, int)
            and not isinstance(self.alignment_tolerance, bool)
            and 0 <= self.alignment_tolerance <= MAX_ALIGNMENT_TOLERANCE),
                 "map_alignment_tolerance", f"an integer from 0 to {MAX_ALIGNMENT_TOLERANCE} "
                 "or None (from the image size)", self.alignment_tolerance)
        require(self.neighbours is None or (
            isinstance(self.neighbours, int) and not isinstance(self.neighbours, bool)
            and 0 <= self.neighbours <= MAX_NEIGHBOURS_ASKED), "map_neighbours",
                 f"an integer from 0 to {MAX_NEIGHBOURS_ASKED} or None (from the number of "
                 "calibration images)", self.neighbours)
        require(isinstance(self.area_scales, int) and not isinstance(self.area_scales, bool)
                and 0 <= self.area_scales <= MAX_AREA_SCALES, "map_area_scales",
                f"an integer from 0 to {MAX_AREA_SCALES}", self.area_scales)

    @property
    def two_sided(self) -> bool:
        """Whether the standardised map counts both signs (the `signed` residual)."""
        return self.residual == "signed"

    def tolerance_for(self, image_size: int) -> int:
        """The alignment tolerance in force at `image_size`: as given, else one pixel per
        PIXELS_PER_TOLERANCE of the side."""
        if self.alignment_tolerance is not None:
            return self.alignment_tolerance
        return min(image_size // PIXELS_PER_TOLERANCE, MAX_ALIGNMENT_TOLERANCE)

    @property
    def resolved(self) -> bool:
        """Whether every setting is a number (what map statistics are computed with)."""
        return self.alignment_tolerance is not None and self.neighbours is not None

    def resolve(self, image_size: int, calibration_images: int) -> tuple["MapConfig", dict]:
        """These settings with the data-dependent ones in force, and why each is what it is.

        A value given is kept, except that neighbours are at most the images
        each cross-fitted fold rests on (say so: the record holds the value in
        force). Otherwise the alignment tolerance is one pixel per
        PIXELS_PER_TOLERANCE of the image's side, and the neighbours as many as
        a fold's images, at most MAX_NEIGHBOURS, none when a fold has fewer
        than MIN_NEIGHBOURS.

        Returns:
          (the resolved MapConfig, {field: {"value", "given", "reason"}}).
        """
        reasons = {}
        if self.alignment_tolerance is not None:
            tolerance = self.alignment_tolerance
            reasons["alignment_tolerance"] = {"value": tolerance, "given": True,
                                              "reason": "given"}
        else:
            tolerance = self.tolerance_for(image_size)
            reasons["alignment_tolerance"] = {
                "value": tolerance, "given": False,
                "reason": f"{image_size} px images: one pixel per {PIXELS_PER_TOLERANCE} of "
                          f"the side (at most {MAX_ALIGNMENT_TOLERANCE})"}
        per_fold = max(calibration_images * (self.folds - 1) // self.folds, 1)
        if self.neighbours is not None:
            neighbours = min(self.neighbours, per_fold) if self.neighbours else 0
            reasons["neighbours"] = {
                "value": neighbours, "given": True,
                "reason": "given" if neighbours == self.neighbours else
                f"{self.neighbours} given, but each of the {self.folds} cross-fitted folds "
                f"rests on {per_fold} of the {calibration_images} calibration images: "
                f"{neighbours} in force"}
        else:
            neighbours = min(per_fold, MAX_NEIGHBOURS) if per_fold >= MIN_NEIGHBOURS else 0
            reasons["neighbours"] = {
                "value": neighbours, "given": False,
                "reason": f"{calibration_images} calibration images, {per_fold} per cross-"
                          f"fitted fold: as many as a fold holds, at most {MAX_NEIGHBOURS}, "
                          f"none below {MIN_NEIGHBOURS}"}
        return (dataclasses.replace(self, alignment_tolerance=tolerance,
                                    neighbours=neighbours), reasons)

    def check_image_size(self, image_size: int) -> None:
        """Refuses a smoothing kernel wider than the images it smooths (a ConfigError
        naming map_kernel_size), before any training or search."""
        require(self.kernel_size <= image_size, "map_kernel_size",
                 f"an odd integer no larger than the image size {image_size}",
                 self.kernel_size)
        require(self.alignment_tolerance is None or 2 * self.alignment_tolerance < image_size,
                 "map_alignment_tolerance", f"less than half the image size {image_size}",
                 self.alignment_tolerance)


def search_config_for_mode(mode: str, base: Optional[SearchConfig] = None,
                           steps: Optional[int] = None) -> SearchConfig:
    """`base`'s settings (λ, Adam, seed, ...) scoring in `mode`.

    Γ is `steps` if given, else base's Γ when base is already in `mode`, else
    the mode's default; `encoder` always gets Γ = 0 and one start.
    """
    base = base or SearchConfig()
    require(mode in SCORING_MODES, "mode", f"one of {SCORING_MODES}", mode)
    if mode == Mode.ENCODER:
        return dataclasses.replace(base, mode=mode, steps=0, restarts=1)
    if steps is None:
        steps = base.steps if base.mode == mode else DEFAULT_STEPS[mode]
    return dataclasses.replace(base, mode=mode, steps=steps)
