"""Settings of the anomaly map: how x and G(z) are compared, smoothed and standardised."""

from __future__ import annotations

import dataclasses
from typing import Optional

from ic_anogan.config.checks import is_finite, require, setting

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
    residual: str = setting(
        "absolute", choices=MAP_RESIDUALS, help="Residual the map statistics standardise: "
        "|x - G(z)| (absolute), x - G(z) two-sided (signed), or a comparison of structure "
        "for textured surfaces: 1 - multi-scale gradient-magnitude similarity (gradient) or "
        "1 - local SSIM (ssim).")
    kernel: str = setting("gaussian", choices=MAP_KERNELS,
                          help="Smoothing kernel of the anomaly map before standardising.")
    kernel_size: int = setting(3, help="Odd side of the smoothing kernel (1: no smoothing).")
    prior_images: float = 10.0
    std_floor: float = 0.1
    top_fraction: float = 0.002
    pixel_percentile: float = setting(
        99.9, help="Defect-mask threshold = this percentile of good images' standardised "
        "pixels.")
    folds: int = 5
    alignment_tolerance: Optional[int] = setting(
        None, help="Pixels G(z) may be shifted to match each pixel before the residual counts "
        "(0: the study's pixel-by-pixel residual).",
        default_words="one pixel per 64 of the image's side")
    neighbours: Optional[int] = setting(
        None, help="Standardise each image by the map statistics of its k nearest good "
        "images in latent space (0: one set of statistics for all).",
        default_words="as many as each cross-fitted fold of the calibration images holds, "
        "at most 30")
    area_scales: int = setting(
        0, help="Coarser scales of the standardised map whose maximum also counts, each in "
        "units of how good images' maxima vary there, so large faint regions are seen (0: "
        "one scale).")

    def __post_init__(self):
        require(self.residual in MAP_RESIDUALS, "map.residual", f"one of {MAP_RESIDUALS}",
                 self.residual)
        require(self.kernel in MAP_KERNELS, "map.kernel", f"one of {MAP_KERNELS}", self.kernel)
        require(isinstance(self.kernel_size, int) and self.kernel_size >= 1
                 and self.kernel_size % 2 == 1, "map.kernel_size", "an odd integer >= 1",
                 self.kernel_size)
        require(is_finite(self.prior_images) and self.prior_images >= 0, "map.prior_images",
                 "a finite number >= 0", self.prior_images)
        require(is_finite(self.std_floor) and 0 < self.std_floor <= 1, "map.std_floor",
                 "a number in (0, 1]", self.std_floor)
        require(is_finite(self.top_fraction) and 0 < self.top_fraction <= 1,
                 "map.top_fraction", "a number in (0, 1]", self.top_fraction)
        require(is_finite(self.pixel_percentile) and 0 < self.pixel_percentile <= 100,
                 "map.pixel_percentile", "a number in (0, 100]", self.pixel_percentile)
        require(isinstance(self.folds, int) and self.folds >= 2, "map.folds",
                 "an integer >= 2", self.folds)
        require(self.alignment_tolerance is None or (
            isinstance(self.alignment_tolerance, int)
            and not isinstance(self.alignment_tolerance, bool)
            and 0 <= self.alignment_tolerance <= MAX_ALIGNMENT_TOLERANCE),
                 "map.alignment_tolerance", f"an integer from 0 to {MAX_ALIGNMENT_TOLERANCE} "
                 "or None (from the image size)", self.alignment_tolerance)
        require(self.neighbours is None or (
            isinstance(self.neighbours, int) and not isinstance(self.neighbours, bool)
            and 0 <= self.neighbours <= MAX_NEIGHBOURS_ASKED), "map.neighbours",
                 f"an integer from 0 to {MAX_NEIGHBOURS_ASKED} or None (from the number of "
                 "calibration images)", self.neighbours)
        require(isinstance(self.area_scales, int) and not isinstance(self.area_scales, bool)
                and 0 <= self.area_scales <= MAX_AREA_SCALES, "map.area_scales",
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
        require(self.kernel_size <= image_size, "map.kernel_size",
                 f"an odd integer no larger than the image size {image_size}",
                 self.kernel_size)
        require(self.alignment_tolerance is None or 2 * self.alignment_tolerance < image_size,
                 "map.alignment_tolerance", f"less than half the image size {image_size}",
                 self.alignment_tolerance)
