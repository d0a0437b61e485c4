"""Maps for textured surfaces: structural comparisons, area scales, and their export."""

import numpy as np
import pytest
import tensorflow as tf

from ic_anogan.config import ConfigError, MapConfig, SearchConfig
from ic_anogan.data import preprocessing
from ic_anogan.data.image_set import ImageSet
from ic_anogan.scoring import anomaly_maps, area_scales, comparisons, map_calibration
from ic_anogan.scoring import scorer as scoring
from ic_anogan.scoring.map_statistics import MapStatistics
from ic_anogan.serving import export as export_lib


def _texture(rng, n, size=32):
    """Streaked surfaces in [-1, 1]: noise stretched along x."""
    noise = rng.normal(0, 1, (n, size, size + 8))
    streaks = sum(noise[:, :, i:i + size] for i in range(8)) / np.sqrt(8)
    return np.clip(0.25 * streaks, -1, 1)[..., None].astype(np.float32)


def test_structural_comparisons_see_edges_not_brightness():
    rng = np.random.default_rng(0)
    image = _texture(rng, 1)
    brighter = np.clip(image + 0.2, -1, 1)
    for name in ("gradient", "ssim"):
        same = comparisons.aligned_comparison(image, image, 0, name).numpy()
        np.testing.assert_allclose(same, 0.0, atol=1e-5)
    # A uniform change of brightness leaves the gradients as they were.
    shifted = comparisons.aligned_comparison(brighter, image, 0, "gradient").numpy()
    assert shifted.max() < 0.05
    # A crack (a dark line across the streaks) is a change of structure.
    cracked = image.copy()
    cracked[0, 4:28, 16, 0] = -1.0
    residual = comparisons.aligned_comparison(cracked, image, 0, "gradient").numpy()[0, ..., 0]
    assert residual[4:28, 15:18].mean() > 5 * residual[:, :8].mean()
    with pytest.raises(ValueError, match="unknown comparison 'edges'"):
        comparisons.aligned_comparison(image, image, 0, "edges")


def test_gradient_comparison_forgives_an_edge_a_pixel_off_within_the_tolerance():
    image = np.full((1, 16, 16, 1), -0.5, np.float32)
    image[:, :, 8:] = 0.5
    drawn = np.full_like(image, -0.5)
    drawn[:, :, 9:] = 0.5  # G draws the edge a pixel to the right
    exact = comparisons.aligned_comparison(image, drawn, 0, "gradient").numpy()
    tolerant = comparisons.aligned_comparison(image, drawn, 1, "gradient").numpy()
    assert exact.max() > 0.3
    assert tolerant.max() < 0.05 * exact.max()


def _good_maps(rng, n, size=32):
    return rng.normal(0, 1, (n, size, size, 1)).astype(np.float32)


def test_area_scales_let_a_large_faint_region_win_and_keep_a_small_one():
    rng = np.random.default_rng(1)
    good = _good_maps(rng, 200)
    normalisation = area_scales.fit_normalisation(good, 2)
    assert normalisation.shape == (3, 2) and np.all(normalisation[:, 1] > 0)
    faint = _good_maps(rng, 1)
    faint[0, 6:22, 6:22] += 1.0  # every pixel a deviation higher: none stands out alone
    spot = _good_maps(rng, 1)
    spot[0, 10, 10] += 8.0
    good_scores = area_scales.combined_map(_good_maps(rng, 50), 2, normalisation).numpy()
    good_max = good_scores.reshape(50, -1).max(axis=1)
    one_scale_good = _good_maps(rng, 50).reshape(50, -1).max(axis=1)
    # One scale: the faint region is lost among good maps' maxima.
    assert faint.max() < np.percentile(one_scale_good, 99)
    for defect in (faint, spot):
        combined = area_scales.combined_map(defect, 2, normalisation).numpy()
        assert combined.max() > good_max.max() + 1.0
    # The faint region wins where it is.
    where = np.unravel_index(np.argmax(area_scales.combined_map(faint, 2, normalisation)
                                       .numpy()[0, ..., 0]), (32, 32))
    assert 6 <= where[0] < 22 and 6 <= where[1] < 22


def _calibrated(config, rng, n=40, size=32):
    images = _texture(rng, n, size)
    reconstructions = (images + rng.normal(0, 0.05, images.shape)).astype(np.float32)
    latents = rng.normal(size=(n, 8)).astype(np.float32)
    return map_calibration.calibrate(images, reconstructions, config, latents=latents)


def test_area_statistics_round_trip_and_refuse_damage():
    rng = np.random.default_rng(2)
    calibrated = _calibrated(MapConfig(residual="gradient", area_scales=2), rng)
    statistics = calibrated.statistics
    assert statistics.config.area_scales == 2 and statistics.config.residual == "gradient"
    values = statistics.to_dict()
    back = MapStatistics.from_dict(values, 32, 8)
    np.testing.assert_allclose(back.area_normalisation, statistics.area_normalisation, rtol=1e-6)
    assert back.config == statistics.config
    with pytest.raises(ValueError, match="'area_normalisation' must hold an offset and a spread "
                                         "for each of the 3 scales"):
        MapStatistics.from_dict({**values, "area_normalisation": [[0.0, 1.0]]}, 32, 8)
    with pytest.raises(ValueError, match="positive spreads"):
        MapStatistics.from_dict({**values, "area_normalisation": [[0.0, -1.0]] * 3}, 32, 8)
    missing = dict(values)
    del missing["area_normalisation"]
    with pytest.raises(ValueError, match="area_normalisation"):
        MapStatistics.from_dict(missing, 32, 8)
    # A record from before area scales means one scale.
    old = {**values, "config": {k: v for k, v in values["config"].items()
                                if k != "area_scales"}}
    old.pop("area_normalisation")
    assert MapStatistics.from_dict(old, 32, 8).config.area_scales == 0
    with pytest.raises(ConfigError, match="map.area_scales"):
        MapConfig(area_scales=9)
    with pytest.raises(ConfigError, match="map.residual"):
        MapConfig(residual="edges")


def test_cross_fitted_good_scores_sit_below_a_faint_region_and_a_crack():
    rng = np.random.default_rng(3)
    config = MapConfig(residual="absolute", area_scales=3)
    calibrated = _calibrated(config, rng, n=60)
    statistics = calibrated.statistics
    threshold = np.percentile(calibrated.good_scores["map_max"], 99)
    images = _texture(rng, 2)
    reconstructions = (images + rng.normal(0, 0.05, images.shape)).astype(np.float32)
    images[0, 8:24, 8:24] += 0.05  # uneven: a faint, large lighter patch
    images[1, 16, 4:28] -= 0.5  # a crack
    out = anomaly_maps.score_maps(images, reconstructions, statistics,
                                  latents=rng.normal(size=(2, 8)).astype(np.float32))
    assert np.all(out["map_max"] > threshold)
    one_scale = _calibrated(MapConfig(residual="absolute"), np.random.default_rng(3), n=60)
    single = anomaly_maps.score_maps(images, reconstructions, one_scale.statistics,
                                     latents=rng.normal(size=(2, 8)).astype(np.float32))
    # The one-scale map misses the faint patch the area scales catch.
    assert single["map_max"][0] < np.percentile(one_scale.good_scores["map_max"], 99)


@pytest.mark.parametrize("mode, residual", [("encoder", "gradient"), ("search", "ssim"),
                                            ("encoder_search", "signed")])
def test_export_of_structural_area_maps_scores_as_in_process(trained_model_dir, tmp_path, mode,
                                                             residual):
    from ic_anogan.models.model_dir import load_trained_model
    model = load_trained_model(trained_model_dir["model_dir"])
    rng = np.random.default_rng(4)
    search = SearchConfig(mode=mode, steps=0 if mode == "encoder" else 3)
    scorer = scoring.SearchScorer(model, search)
    good = ImageSet.unlabelled(_texture(rng, 24, 16))
    outputs = scorer.score(good, 8)
    calibrated = map_calibration.calibrate(
        good.images, outputs.reconstruction, MapConfig(residual=residual, area_scales=2),
        latents=outputs.latent)
    statistics = calibrated.statistics
    threshold = float(np.percentile(calibrated.good_scores["map_max"], 99))
    path = export_lib.export_saved_model(model, str(tmp_path / "serving"), search, threshold,
                                         warmup_batch_sizes=(), map_statistics=statistics,
                                         image_score="map_max")
    pixels = rng.integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)
    served = {k: v.numpy() for k, v in tf.saved_model.load(path).signatures[
        "serving_default"](images=tf.constant(pixels)).items()}
    images = ImageSet.unlabelled(preprocessing.uint8_to_model(pixels))
    local = scoring.SearchScorer(model, search, statistics).score(images, 8)
    np.testing.assert_allclose(served["map_score"], local.score("map_max"), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(served["standardised_map"], local.standardised_map, rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_array_equal(served["is_anomaly"], local.score("map_max") > threshold)
