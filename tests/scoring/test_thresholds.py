"""Thresholds from few good scores: the fitted tail, its interval, the outliers."""

import math

import numpy as np
import pytest

from ic_anogan.config import CalibrationConfig, ConfigError, MapConfig, SearchConfig
from ic_anogan.scoring import calibration, threshold_evidence, thresholds


def _gumbel(count: int, seed: int, location: float = 5.0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).gumbel(location, scale, count)


def test_gumbel_fit_recovers_its_parameters_and_quantile():
    fit = thresholds.fit_gumbel(_gumbel(20000, 0, 5.0, 2.0))
    assert fit.location == pytest.approx(5.0, abs=0.05)
    assert fit.scale == pytest.approx(2.0, abs=0.05)
    # The 99th percentile of Gumbel(5, 2): 5 - 2 ln(-ln 0.99) = 14.2.
    assert fit.quantile(0.99) == pytest.approx(5.0 - 2.0 * math.log(-math.log(0.99)), abs=0.2)
    assert fit.quantile(1.0) == math.inf
    assert thresholds.fit_gumbel([3.0, 3.0, 3.0, 3.0, 3.0, 3.0]) is None  # no spread: no fit
    assert thresholds.fit_gumbel([1.0, 2.0]) is None


def test_one_outlier_cannot_move_the_fitted_threshold():
    scores = _gumbel(41, 1)
    clean = thresholds.estimate(scores, 99)
    with_outlier = np.append(scores[:-1], 38.0)  # one odd part among 41, as on the real set
    moved = thresholds.estimate(with_outlier, 99)
    assert clean.rule == moved.rule == "fitted"
    # The sample percentile follows the outlier most of the way; the fit barely moves.
    assert np.percentile(with_outlier, 99) > 25
    assert abs(moved.threshold - clean.threshold) < 0.5
    assert moved.outliers == (40,)
    assert moved.sample_percentile == pytest.approx(np.percentile(with_outlier, 99))


def test_few_scores_get_a_threshold_near_the_true_percentile():
    """Over many draws of 20 or 41 good scores, the fitted threshold's false-reject rate on the
    true distribution stays near 1%; the sample percentile's is several times that at 20."""
    truth = 5.0 - math.log(-math.log(0.99))
    fitted, sample = {20: [], 41: []}, {20: []}
    for count in (20, 41):
        for seed in range(200):
            scores = _gumbel(count, 100 + seed)
            t = thresholds.estimate(scores, 99).threshold
            fitted[count].append(1 - math.exp(-math.exp(-(t - 5.0))))
            if count == 20:
                s = np.percentile(scores, 99)
                sample[20].append(1 - math.exp(-math.exp(-(s - 5.0))))
    for count in (20, 41):
        assert 0.005 < np.median(fitted[count]) < 0.02
    assert np.mean(sample[20]) > 0.03
    assert truth > 0


def test_plenty_of_scores_use_their_own_percentile():
    scores = _gumbel(3000, 2)
    estimate = thresholds.estimate(scores, 99)
    assert estimate.rule == "percentile"
    assert estimate.threshold == pytest.approx(np.percentile(scores, 99))
    assert estimate.count == 3000 and estimate.exceedances == 30
    # 300 scores hold 3 beyond the 99th percentile: enough for their own.
    assert thresholds.estimate(scores[:300], 99).rule == "percentile"
    # Below that, the fit; and the fit agrees with the percentile within its noise.
    fewer = thresholds.estimate(scores[:299], 99)
    assert fewer.rule == "fitted"
    assert abs(fewer.threshold - np.percentile(scores, 99)) < 1.0
    # The old rule on request.
    assert thresholds.estimate(scores[:41], 99, "percentile").threshold == pytest.approx(
        np.percentile(scores[:41], 99))
    assert thresholds.estimate(scores[:41], 100).threshold == pytest.approx(scores[:41].max())
    with pytest.raises(ValueError, match="rule='median'"):
        thresholds.estimate(scores, 99, "median")


def test_excluded_scores_leave_the_threshold_and_the_count():
    scores = np.append(_gumbel(3000, 3), [500.0] * 40)
    kept = thresholds.estimate(scores, 99)
    assert kept.rule == "percentile" and kept.threshold > 100  # 40 defects among the good
    excluded = thresholds.estimate(scores, 99, excluded=kept.outliers)
    assert len(kept.outliers) == 40
    assert excluded.count == 3000
    assert excluded.threshold == pytest.approx(np.percentile(scores[:3000], 99))


def test_clopper_pearson_matches_known_intervals():
    # k = 0 of n: the upper bound is 1 - (alpha/2)^(1/n).
    low, high = thresholds.clopper_pearson(0, 41)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 41), rel=1e-6)
    # 3 of 328 and 7 of 100: the Beta quantiles Beta(k, n-k+1) at 2.5% and Beta(k+1, n-k)
    # at 97.5%, as scipy.stats.beta.ppf gives them.
    low, high = thresholds.clopper_pearson(3, 328)
    assert low == pytest.approx(0.00189018184, rel=1e-6)
    assert high == pytest.approx(0.02649539582, rel=1e-6)
    low, high = thresholds.clopper_pearson(7, 100)
    assert low == pytest.approx(0.02860528891, rel=1e-6)
    assert high == pytest.approx(0.13891972846, rel=1e-6)
    low, high = thresholds.clopper_pearson(41, 41)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 41), rel=1e-6)


def test_record_carries_evidence_outliers_and_a_warning():
    scores = np.append(_gumbel(40, 4), 40.0)
    found = threshold_evidence.find_outliers({"study": scores},
                                             [f"good/{i}.png" for i in range(41)])
    assert [o["image"] for o in found] == ["good/40.png"]
    assert found[0]["flagged_by"] == ["study"] and found[0]["scores"]["study"] == 40.0
    record = calibration.calibrate(scores[:40], 99, SearchConfig(steps=3), "held-out",
                                   outliers=found)
    assert record["count"] == 40 and record["images"] == 41
    assert record["outliers"][0]["image"] == "good/40.png"
    assert record["outlier_policy"] == "exclude" and record["threshold_rule"] == "fitted"
    summary = threshold_evidence.evidence(record, "study")
    assert summary["images"] == 40 and summary["rule"] == "fitted"
    low, high = summary["false_reject_interval"]
    assert low == 0.0 and 0.05 < high < 0.12
    assert "rest on 40 good images" in summary["warning"]
    assert "false-reject rate 0.0% to" in threshold_evidence.describe_evidence(summary)
    # A record from before the evidence has none, and says nothing.
    assert threshold_evidence.evidence({"threshold": 1.0, "count": 5}, "study") is None


def test_a_calibration_is_a_typed_read_only_record_that_round_trips(tmp_path):
    """What calibrate returns reads through typed properties, cannot be changed by its
    reader, and is stored and read back as the same record (with newer keys kept)."""
    scores = _gumbel(60, 5)
    made = calibration.calibrate(scores, 99, SearchConfig(steps=3, seed=2), "held-out")
    assert made.mode == "search" and made.search_config == SearchConfig(steps=3, seed=2)
    assert made.thresholds == {"study": made.threshold} and made.map_statistics is None
    assert made.outliers == [] and made.evidence("study")["images"] == 60
    with pytest.raises(TypeError):
        made["threshold"] = 0.0  # noqa: the record is read-only
    copy = made.to_dict()
    copy["threshold"] = -1.0
    assert made.threshold != -1.0  # to_dict hands out a copy
    stored = {**made.to_dict(), "from_a_newer_version": {"kept": True}}
    checked = calibration.Calibration.checked(stored, "search", "calibration.json")
    calibration.write(str(tmp_path), checked)
    again = calibration.read(str(tmp_path))
    assert again.to_dict() == stored and again.threshold == made.threshold
    with pytest.raises(calibration.CalibrationError,
                       match=r"calibration.json: modes.search.threshold is 'x'; expected a "
                             "finite number; recalibrate mode search") as refused:
        calibration.Calibration.checked({**stored, "threshold": "x"}, "search",
                                        "calibration.json")
    assert refused.value.remedy == {"recalibration.good": "<good images>",
                                    "score.modes": "search"}


def test_calibration_settings_are_checked():
    with pytest.raises(ConfigError, match="calibration.threshold_rule"):
        CalibrationConfig(threshold_rule="mean")
    with pytest.raises(ConfigError, match="calibration.outliers"):
        CalibrationConfig(outliers="drop")


def test_neighbour_counts_that_cannot_be_meant_are_refused():
    for value in (10 ** 12, 1025, -1):
        with pytest.raises(ConfigError,
                           match="map.neighbours=.*expected an integer from 0 to 1024"):
            MapConfig(neighbours=value)
    assert MapConfig(neighbours=1024).neighbours == 1024
