"""Thresholds from few good scores: a fitted tail, how sure it is, and the outliers.

A threshold is meant to be the chosen percentile (say the 99th) of what
unseen good parts score. With n good scores, the sample percentile needs
about 100/(100 - percentile) scores beyond it to mean anything: with 41
scores the 99th percentile is an interpolation between the two largest, so
one odd image, or one defective part labelled good, moves it without limit,
and with 20 scores it is the maximum, which one good part in 21 exceeds.

So, with the default rule `fitted`, the threshold comes from a model of the
scores' distribution fitted to their bulk:

  * the family is Gumbel, the limit law of a maximum (map_max is the
    maximum of thousands of standardised pixels; map_topk a mean of the
    largest; A(x) a sum of positive residuals, right-skewed like them);
  * location and scale are a least-squares line through the order
    statistics against the family's quantiles, using only those between
    the FIT_LOW and FIT_HIGH plotting positions: a few images at the top,
    however far out, do not enter the fit;
  * the threshold is the fit's quantile at the percentile.

Where the sample holds at least EMPIRICAL_TAIL_SCORES scores beyond the
percentile (300 scores for the 99th), the sample percentile is interpolated
inside the sample's own tail, one score moves it by one order statistic at
most, and it needs no model: it is used. Measured at 64 px on the demo's
328 held-out images, the Gumbel line through the bulk put the 99th percentile
where 5 to 7 of them lay beyond it: a tail heavier than the bulk says, which
the sample percentile sees and the fit does not (docs/benchmarks.md, "Few
good images").

Whatever the rule, the record says how sure it is: how many scores the
threshold rests on, how many of them lie beyond it, and the Clopper-Pearson
interval for the false-reject rate that k of n implies. For an order
statistic as threshold, that interval is exact: the good-part mass beyond
the r-th largest of n scores is Beta(r, n + 1 - r) distributed.

Outliers: a good score beyond the fit's 1 - OUTLIER_FALSE_ALARM / n quantile
(where all n good parts together would land only once in a hundred
calibrations) is named, because a mislabelled or damaged part belongs out
of the good set. Whether outliers are left out of the threshold is a setting
(`CalibrationConfig.outliers`): `exclude` (default) or `keep`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np

from ic_anogan.config import THRESHOLD_RULES

# The share of the sorted scores the tail is fitted to: the bulk, never the
# few largest, which is where an outlier sits.
FIT_LOW, FIT_HIGH = 0.1, 0.9
# The fewest order statistics a line is fitted through.
MIN_FIT_SCORES = 5
# From this many scores beyond the percentile up, the sample percentile is used.
EMPIRICAL_TAIL_SCORES = 3
# Under the fit, all good scores of a calibration lie below the outlier line
# in 99 calibrations out of 100.
OUTLIER_FALSE_ALARM = 0.01
# Below this many scores a threshold is reported with a warning.
FEW_SCORES = 100
CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class GumbelFit:
    """A Gumbel (maximum) distribution: F(x) = exp(-exp(-(x - location) / scale))."""

    location: float
    scale: float

    def quantile(self, probability: float) -> float:
        if probability >= 1.0:
            return math.inf
        return self.location - self.scale * math.log(-math.log(probability))

    def to_dict(self) -> dict:
        return {"family": "gumbel", "location": self.location, "scale": self.scale,
                "fitted_between": [FIT_LOW, FIT_HIGH]}


def _plotting_positions(count: int) -> np.ndarray:
    """Gringorten's positions (i - 0.44) / (n + 0.12): nearly unbiased for Gumbel."""
    return (np.arange(1, count + 1) - 0.44) / (count + 0.12)


def fit_gumbel(scores: Sequence[float], low: float = FIT_LOW,
               high: float = FIT_HIGH) -> Optional[GumbelFit]:
    """Gumbel location and scale from the bulk of `scores`, the order statistics between
    the `low` and `high` plotting positions (module docstring); None when the scores are
    too few or all equal."""
    ordered = np.sort(np.asarray(scores, np.float64))
    if len(ordered) < 3:
        return None
    positions = _plotting_positions(len(ordered))
    inside = (positions >= low) & (positions <= high)
    if inside.sum() < MIN_FIT_SCORES:  # too few: the central ones, as many as there are
        middle = len(ordered) // 2
        half = min(MIN_FIT_SCORES, len(ordered)) // 2
        inside = np.zeros(len(ordered), bool)
        inside[max(0, middle - half):middle - half + min(MIN_FIT_SCORES, len(ordered))] = True
    reduced = -np.log(-np.log(positions[inside]))
    values = ordered[inside]
    slope, intercept = np.polyfit(reduced, values, 1)
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope <= 1e-12:
        return None
    return GumbelFit(float(intercept), float(slope))


def clopper_pearson(exceedances: int, count: int,
                    confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval for a rate seen `exceedances` times in `count`."""
    if count <= 0:
        return 0.0, 1.0
    tail = (1.0 - confidence) / 2

    def binomial_cdf(k: int, p: float) -> float:  # P(X <= k), X ~ Bin(count, p)
        if p <= 0.0:
            return 1.0
        if p >= 1.0:
            return 1.0 if k >= count else 0.0
        log_p, log_q = math.log(p), math.log1p(-p)
        terms = [math.lgamma(count + 1) - math.lgamma(i + 1) - math.lgamma(count - i + 1)
                 + i * log_p + (count - i) * log_q for i in range(k + 1)]
        top = max(terms)
        return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))

    def solve(function, target: float) -> float:  # function decreasing in p on [0, 1]
        low, high = 0.0, 1.0
        for _ in range(60):
            middle = (low + high) / 2
            if function(middle) > target:
                low = middle
            else:
                high = middle
        return (low + high) / 2

    lower = 0.0 if exceedances <= 0 else solve(
        lambda p: -(1.0 - binomial_cdf(exceedances - 1, p)), -tail)
    upper = 1.0 if exceedances >= count else solve(
        lambda p: binomial_cdf(exceedances, p), tail)
    return lower, upper


@dataclasses.dataclass(frozen=True)
class ThresholdEstimate:
    """A threshold, what it rests on, and how sure it is.

    Attributes:
      threshold: the estimate of the percentile of unseen good parts' scores.
      rule: `fitted` (the Gumbel fit's quantile) or `percentile` (the sample
        percentile of the scores kept).
      count: scores the threshold rests on (outliers left out when excluded).
      exceedances: of those, how many lie beyond the threshold.
      false_reject_interval: Clopper-Pearson interval, at `CONFIDENCE`, for the
        share of good parts the threshold rejects.
      outliers: indices (into the scores given) beyond the outlier line.
      fit: the Gumbel fit, or None where the scores allow none.
      sample_percentile: the plain percentile of every score, for comparison.
    """

    threshold: float
    rule: str
    count: int
    exceedances: int
    false_reject_interval: tuple
    outliers: tuple
    fit: Optional[GumbelFit]
    sample_percentile: float

    def to_dict(self) -> dict:
        return {"rule": self.rule, "count": self.count, "exceedances": self.exceedances,
                "false_reject_interval": [float(v) for v in self.false_reject_interval],
                "confidence": CONFIDENCE, "outliers": list(self.outliers),
                "fit": None if self.fit is None else self.fit.to_dict(),
                "sample_percentile": self.sample_percentile}


def outlier_indices(scores: np.ndarray, fit: Optional[GumbelFit]) -> tuple:
    """Indices of scores beyond the fit's 1 - OUTLIER_FALSE_ALARM / n quantile."""
    if fit is None or len(scores) == 0:
        return ()
    line = fit.quantile(1.0 - OUTLIER_FALSE_ALARM / len(scores))
    return tuple(int(i) for i in np.flatnonzero(scores > line))


def estimate(scores: Sequence[float], percentile: float, rule: str = "fitted",
             excluded: Sequence[int] = ()) -> ThresholdEstimate:
    """The threshold at `percentile` of good `scores`, with its evidence.

    Args:
      scores: good images' scores (finite).
      percentile: in (0, 100].
      rule: `fitted` or `percentile` (THRESHOLD_RULES; module docstring).
      excluded: indices left out of the threshold (the outliers, when the
        calibration excludes them).
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"rule={rule!r}: expected one of {THRESHOLD_RULES}")
    values = np.asarray(scores, np.float64)
    keep = np.ones(len(values), bool)
    keep[list(excluded)] = False
    if not keep.any():  # every image an outlier: nothing is left to fit, keep them all
        keep[:] = True
    kept = values[keep]
    fit = fit_gumbel(kept)
    outliers = outlier_indices(values, fit_gumbel(values))
    share_beyond = 1.0 - percentile / 100.0
    plenty = len(kept) * share_beyond >= EMPIRICAL_TAIL_SCORES
    if rule == "percentile" or plenty or fit is None or percentile >= 100:
        threshold, used = float(np.percentile(kept, percentile)), "percentile"
    else:
        threshold, used = fit.quantile(percentile / 100.0), "fitted"
    exceedances = int(np.sum(kept > threshold))
    return ThresholdEstimate(float(threshold), used, int(len(kept)), exceedances,
                             clopper_pearson(exceedances, len(kept)), outliers, fit,
                             float(np.percentile(values, percentile)))
