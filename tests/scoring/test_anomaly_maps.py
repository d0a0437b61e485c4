"""Map statistics, map scores, defect masks and PRO: hand-made maps, tiny models."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import export_from_before_the_map_scores, tensorboard_tags

from ic_anogan.config import ConfigError, DataConfig, MapConfig
from ic_anogan.data import preprocessing
from ic_anogan.data.image_set import ImageSet
from ic_anogan.jobs import score_job
from ic_anogan.jobs.score_request import ScoreRequest, ScoringError
from ic_anogan.models import model_dir as model_dir_lib
from ic_anogan.reporting import metrics
from ic_anogan.scoring import (anomaly_maps, calibration, comparisons, map_calibration,
                               map_statistics,
                               scorer as scoring)
from ic_anogan.scoring.calibration_record import Calibration
from ic_anogan.scoring.map_statistics import MapStatistics
from ic_anogan.scoring.outputs import CSV_COLUMNS, SERVED_MAP_OUTPUTS, SERVED_OUTPUTS, ScoreOutputs
from ic_anogan.serving import client as serving

# Hand-made statistics: one set for every image, the exact residual, no smoothing.
NO_SMOOTHING = MapConfig(kernel="box", kernel_size=1, alignment_tolerance=0, neighbours=0)


def _statistics(mean, std, config=NO_SMOOTHING, pixel_threshold=3.0):
    return MapStatistics(np.asarray(mean, np.float32), np.asarray(std, np.float32), 10,
                         pixel_threshold, config)


def test_map_max_of_one_hot_pixel_is_its_standardised_value():
    size = 8
    mean = np.full((size, size), 0.1)
    std = np.full((size, size), 0.05)
    std[5, 2] = 0.2
    reconstructions = np.zeros((1, size, size, 1), np.float32)
    images = np.full((1, size, size, 1), 0.1, np.float32)  # exactly the mean: z = 0
    images[0, 5, 2, 0] = 0.9
    out = anomaly_maps.score_maps(images, reconstructions, _statistics(mean, std))
    expected = (0.9 - 0.1) / 0.2
    np.testing.assert_allclose(out["map_max"], [expected], rtol=1e-6)
    np.testing.assert_allclose(out["standardised_map"][0, 5, 2, 0], expected, rtol=1e-6)
    assert (out["map_x"][0], out["map_y"][0]) == (2, 5)
    # The mask is the standardised map against the pixel threshold: only the hot pixel.
    assert out["defect_mask"].dtype == np.uint8
    assert out["defect_mask"].sum() == 1 and out["defect_mask"][0, 5, 2, 0] == 1
    # Top fraction of one pixel is the maximum too.
    np.testing.assert_allclose(out["map_topk"], out["map_max"], rtol=1e-6)


def test_signed_residual_flags_dark_and_bright_alike():
    size = 8
    config = MapConfig(residual="signed", kernel="box", kernel_size=1, alignment_tolerance=0,
                       neighbours=0)
    stats = _statistics(np.zeros((size, size)), np.full((size, size), 0.1), config)
    images = np.zeros((2, size, size, 1), np.float32)
    images[0, 1, 1, 0], images[1, 6, 6, 0] = 0.5, -0.5  # bright, dark
    out = anomaly_maps.score_maps(images, np.zeros_like(images), stats)
    np.testing.assert_allclose(out["map_max"], [5.0, 5.0], rtol=1e-6)


def test_smoothing_keeps_constants_and_kernels_sum_to_one():
    constant = np.full((2, 9, 9, 1), 0.3, np.float32)
    for kernel in ("box", "gaussian"):
        config = MapConfig(kernel=kernel, kernel_size=5)
        smoothed = anomaly_maps.smoothed_residual(constant, np.zeros_like(constant), config)
        # Reflect padding: the border is not darkened.
        np.testing.assert_allclose(smoothed.numpy(), 0.3, rtol=1e-6)
        assert anomaly_maps._kernel(config).sum() == pytest.approx(1.0)


def test_shrinkage_keeps_two_images_sane():
    rng = np.random.default_rng(0)
    maps = rng.uniform(0.0, 0.2, (2, 16, 16))
    maps[:, 3, 3] = 0.05  # no variation at all at this pixel in two images
    config = MapConfig(prior_images=10.0, std_floor=0.1)
    mean, std = map_calibration.estimate(maps, config)
    wide_variance = maps.var(axis=0).mean()
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    # Shrunk toward the image-wide values with the weight of 10 images out of 12.
    expected_mean = (2 * 0.05 + 10 * maps.mean(axis=0).mean()) / 12
    assert mean[3, 3] == pytest.approx(expected_mean, rel=1e-5)
    assert std[3, 3] == pytest.approx(np.sqrt(10 * wide_variance / 12), rel=1e-5)
    assert std.min() >= 0.1 * np.sqrt(wide_variance) * (1 - 1e-6)
    # A new good-looking map does not explode anywhere.
    standardised = anomaly_maps.standardise(tf.constant(maps[:1, ..., None], tf.float32),
                                            mean, std, config).numpy()
    assert np.abs(standardised).max() < 10


def test_calibration_with_few_images_cross_fits_and_says_how_many(caplog):
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, (2, 16, 16, 1)).astype(np.float32)
    reconstructions = images + rng.normal(0, 0.05, images.shape).astype(np.float32)
    latents = rng.normal(size=(2, 8)).astype(np.float32)
    result = map_calibration.calibrate(images, reconstructions, MapConfig(), latents=latents)
    assert result.statistics.count == 2
    # Two images leave no neighbours to speak of: the rule turns them off, and says why.
    assert result.statistics.config.neighbours == 0
    assert result.statistics.reference_maps is None
    assert result.resolution["neighbours"] == {
        "value": 0, "given": False, "reason": "2 calibration images, 1 per cross-fitted fold: "
        "as many as a fold holds, at most 30, none below 5"}
    # Asked for more neighbours than a fold holds: the value in force is recorded and logged.
    with caplog.at_level(logging.WARNING):
        asked = map_calibration.calibrate(images, reconstructions, MapConfig(neighbours=30),
                                          latents=latents)
    assert asked.statistics.config.neighbours == 1
    assert asked.statistics.reference_maps.shape == (2, 16, 16)
    assert asked.resolution["neighbours"]["given"] is True
    assert "30 given, but each of the 5 cross-fitted folds rests on 1 of the 2 calibration " \
           "images: 1 in force" in caplog.text
    assert set(result.good_scores) == {"map_max", "map_topk"}
    assert all(np.all(np.isfinite(v)) for v in result.good_scores.values())
    assert np.isfinite(result.statistics.pixel_threshold)
    text = map_statistics.describe(result.statistics)
    assert "2 good images" in text and "lean on the image-wide" in text


def test_statistics_round_trip_through_the_model_dir(trained_model_dir):
    for mode in ("search", "encoder", "encoder_search"):
        record = calibration.read(trained_model_dir["model_dir"], mode)
        statistics = record.map_statistics
        assert statistics.mean.shape == (16, 16) and statistics.count == len(
            trained_model_dir["result"].heldout)
        again = MapStatistics.from_dict(json.loads(json.dumps(statistics.to_dict())))
        np.testing.assert_array_equal(again.mean, statistics.mean)
        np.testing.assert_array_equal(again.std, statistics.std)
        resolved = MapConfig().resolve(16, len(trained_model_dir["result"].heldout))[0]
        assert again.config == statistics.config == resolved
        assert set(record.thresholds) == {"study", "map_max", "map_topk"}


def test_map_max_threshold_rejects_about_the_percentile_of_new_good_images(trained_model_dir):
    """Cross-fitted thresholds hold on good images the statistics never saw."""
    from ic_anogan.data import synthetic
    model = model_dir_lib.load_trained_model(trained_model_dir["model_dir"])
    record = calibration.read(model.model_dir, "encoder")
    good = synthetic.render_set("validation", 16, good=200, seed=0)
    outputs = scoring.SearchScorer(model, record.search_config,
                                   record.map_statistics).score(good, 64)
    rejected = np.mean(outputs.score("map_max") > record.thresholds["map_max"])
    assert rejected < 0.2  # 1% calibrated on 4 held-out images: loose, but not in-sample low


def test_old_calibration_without_statistics_scores_with_study_only(trained_model_dir):
    record = calibration.read(trained_model_dir["model_dir"], "search").to_dict()
    record.pop("map")
    old = Calibration.checked(record, "search", "calibration.json", 16)
    assert old.map_statistics is None and set(old.thresholds) == {"study", "map_max", "map_topk"}
    outputs = ScoreOutputs(anomaly_score=np.ones(2), residual_score=np.ones(2),
                           discrimination_score=np.ones(2),
                           reconstruction=np.zeros((2, 16, 16, 1)),
                           anomaly_map=np.zeros((2, 16, 16, 1)))
    assert outputs.available_scores() == ["study"]
    with pytest.raises(ValueError, match="recalibrating on good images"):
        outputs.score("map_max")


def test_bad_map_settings_name_the_flag():
    with pytest.raises(ConfigError, match="map.kernel_size"):
        MapConfig(kernel_size=4)
    with pytest.raises(ConfigError, match="map.pixel_percentile"):
        MapConfig(pixel_percentile=float("nan"))
    with pytest.raises(ValueError, match="std"):
        MapStatistics.from_dict({**_statistics(np.zeros((4, 4)), np.ones((4, 4))).to_dict(),
                                 "std": np.zeros((4, 4)).tolist()})


def test_connected_regions_and_pro_on_hand_made_maps():
    mask = np.zeros((6, 6), bool)
    mask[0:2, 0:2] = True          # region of 4
    mask[2, 2] = True              # touches the first diagonally: same region (8-connected)
    mask[4:6, 4] = True            # region of 2
    regions = metrics.connected_regions(mask)
    assert sorted(len(r) for r in regions) == [2, 5]
    masks = mask[None, ..., None].astype(np.float32)
    assert metrics.pro_auc(masks * 5.0, masks) == pytest.approx(1.0)
    # Finding only the small region: half the regions overlap fully, whatever their size.
    only_small = np.zeros_like(masks)
    only_small[0, 4:6, 4, 0] = 5.0
    assert metrics.pro_auc(only_small, masks) == pytest.approx(0.5, abs=0.02)


@pytest.fixture(scope="session")
def exported_with_maps(exported_modes):
    """The default mode of the every-mode export: encoder_search, deciding by map_max."""
    mode = "encoder_search"
    return {"model": exported_modes["model"], "path": exported_modes["path"],
            "loaded": exported_modes["loaded"], "config": exported_modes["configs"][mode],
            "statistics": exported_modes["statistics"][mode],
            "threshold": exported_modes["thresholds"][mode]}


@pytest.mark.parametrize("n", [1, 3])
def test_export_map_outputs_equal_the_in_process_ones(exported_with_maps, n):
    e = exported_with_maps
    pixels = np.random.default_rng(n).integers(0, 256, (n, 16, 16, 1), dtype=np.uint8)
    served = {k: v.numpy() for k, v in e["loaded"].signatures[
        "serving_default"](images=tf.constant(pixels)).items()}
    assert set(served) == set(SERVED_OUTPUTS + SERVED_MAP_OUTPUTS)
    images = ImageSet.unlabelled(preprocessing.uint8_to_model(pixels))
    local = scoring.SearchScorer(e["model"], e["config"], e["statistics"]).score(images, 8)
    np.testing.assert_allclose(served["map_score"], local.score("map_max"), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(served["standardised_map"], local.standardised_map,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(served["defect_mask"], local.defect_mask)
    assert served["defect_mask"].dtype == np.uint8
    np.testing.assert_array_equal(served["map_x"], local.map_x)
    np.testing.assert_array_equal(served["is_anomaly"], local.score("map_max") > e["threshold"])
    # The export's client returns the same type, under the same names.
    client = serving.ExportedModel(e["path"]).scorer().score(images, 8)
    np.testing.assert_allclose(client.score("map_max"), local.score("map_max"), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_array_equal(client.is_anomaly, served["is_anomaly"])


def test_export_carries_the_statistics_and_says_which_score_decides(exported_with_maps):
    e = exported_with_maps
    loaded = e["loaded"]
    meta = {k: v.numpy() for k, v in loaded.signatures["metadata"]().items()}
    assert meta["image_score"] == b"map_max"
    assert meta["pixel_threshold"] == pytest.approx(e["statistics"].pixel_threshold)
    client = serving.ExportedModel(e["path"])
    assert client.default_mode == "encoder_search"
    assert client.image_scores["encoder_search"] == "map_max"
    again = client.map_statistics("encoder_search")
    np.testing.assert_array_equal(again.mean, e["statistics"].mean)


def test_reports_carry_both_scores_and_old_dirs_say_how_to_add_them(trained_model_dir,
                                                                      tmp_path, caplog):
    counts = DataConfig(synthetic_counts={"good": 6, "short_fill": 3, "void": 3})
    out = tmp_path / "new"
    score_job.run(ScoreRequest(model_dir=trained_model_dir["model_dir"], output_dir=str(out),
                                    log_dir=str(tmp_path / "logs"), modes=["encoder"],
                                    data=counts))
    header = (out / "scores.csv").read_text().splitlines()[0].split(",")
    assert header == list(CSV_COLUMNS)
    assert header[-3:] == ["map_score", "map_x", "map_y"]
    written = json.loads((out / "metrics.json").read_text())
    assert written["image_score"] == "map_max"
    assert set(written["image_scores"]) == {"study", "map_max", "map_topk"}
    assert {"pixel_auroc", "pixel_auroc_standardised", "pro"} <= set(written)
    assert len(os.listdir(out / "overlays")) == 8
    tags = tensorboard_tags(str(tmp_path / "logs" / "score"))
    assert {"map_max/all", "map_max/good", "map_max/void", "map_statistics/mean",
            "map_statistics/std", "metrics/pro", "metrics/pixel_auroc_standardised",
            "reconstructions/most_anomalous"} <= tags

    # A model dir from before the map statistics: study decides, and the log says how to add them.
    old = tmp_path / "old_model"
    shutil.copytree(trained_model_dir["model_dir"], old)
    stored = json.loads((old / "calibration.json").read_text())
    for record in stored["modes"].values():
        record.pop("map"), record.pop("image_scores")
    (old / "calibration.json").write_text(json.dumps(stored))
    score_job.run(ScoreRequest(model_dir=str(old), output_dir=str(tmp_path / "o"),
                                    log_dir=str(tmp_path / "logs2"), modes=["encoder"],
                                    data=counts))
    assert "Recalibrate it on good images" in caplog.text and "study" in caplog.text
    written = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert written["image_score"] == "study" and list(written["image_scores"]) == ["study"]
    with pytest.raises(ScoringError, match="recalibrating on good images") as refused:
        score_job.run(ScoreRequest(model_dir=str(old), output_dir=str(tmp_path / "p"),
                                        log_dir=str(tmp_path / "logs2"), modes=["encoder"],
                                        image_score="map_max", data=counts))
    assert refused.value.paths == ("score.image_score",)
    assert refused.value.remedy == {"recalibration.good": "<good images>"}


def test_an_export_from_before_the_map_scores_still_scores(trained_model_dir, exported,
                                                           tmp_path):
    """No statistics, no image_score in its settings: score_main decides by study."""
    record = calibration.read(trained_model_dir["model_dir"], "search")
    # The search mode with its study threshold, as exported before the map scores.
    path = export_from_before_the_map_scores(exported["path"], str(tmp_path / "serving" / "1"))
    client = serving.ExportedModel(path)
    assert client.image_scores == {"search": "study"} and client.map_statistics("search") is None
    score_job.run(ScoreRequest(saved_model=path, output_dir=str(tmp_path / "o"),
                                    log_dir=str(tmp_path / "tb"), data=DataConfig(
                                        synthetic_counts={"good": 3, "short_fill": 2})))
    written = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert written["image_score"] == "study" and written["threshold"] == record["threshold"]
    rows = (tmp_path / "o" / "scores.csv").read_text().splitlines()
    assert all(row.endswith(",,,") for row in rows[1:])  # no map columns to fill


def _edge(size=10, at=5):
    """A dark body whose right edge is at column `at`: [1, S, S, 1]."""
    image = np.full((1, size, size, 1), -0.6, np.float32)
    image[0, :, at:, 0] = 0.4
    return image


def test_alignment_tolerance_forgives_an_edge_drawn_a_pixel_off():
    image, drawn = _edge(at=5), _edge(at=6)  # G draws the edge one pixel to the right
    exact = comparisons.aligned_comparison(image, drawn, 0).numpy()
    tolerant = comparisons.aligned_comparison(image, drawn, 1).numpy()
    np.testing.assert_allclose(exact[0, :, 5, 0], 1.0, rtol=1e-6)  # a full column lit
    np.testing.assert_allclose(tolerant, 0.0, atol=1e-7)


def test_alignment_tolerance_keeps_a_one_pixel_void_and_its_sign():
    image = _edge(at=7)
    drawn = image.copy()
    image[0, 3, 3, 0] = -1.0  # a dark pit inside the flat body, 0.4 below it
    for tolerance in (0, 1, 2):
        residual = comparisons.aligned_comparison(image, drawn, tolerance).numpy()
        np.testing.assert_allclose(residual[0, 3, 3, 0], 0.4, rtol=1e-6)
        assert np.count_nonzero(residual) == 1
        signed = comparisons.aligned_comparison(image, drawn, tolerance, "signed").numpy()
        np.testing.assert_allclose(signed[0, 3, 3, 0], -0.4, rtol=1e-6)
    # Shifted within the tolerance, the best match is the closest value whatever its side.
    shifted = comparisons.aligned_comparison(_edge(at=5), _edge(at=4), 1, "signed").numpy()
    np.testing.assert_allclose(shifted, 0.0, atol=1e-7)


def test_statistics_from_before_the_alignment_tolerance_keep_the_exact_residual():
    stored = _statistics(np.zeros((4, 4)), np.ones((4, 4))).to_dict()
    for key in ("alignment_tolerance", "neighbours"):
        stored["config"].pop(key)
    read = MapStatistics.from_dict(stored)
    assert read.config.alignment_tolerance == 0 and read.config.neighbours == 0
    # What new calibrations use: settings that follow the image size and the image count.
    assert MapConfig().resolve(64, 328)[0].alignment_tolerance == 1
    assert MapConfig().resolve(64, 328)[0].neighbours == 30
    assert MapConfig().resolve(32, 40)[0].alignment_tolerance == 0
    assert MapConfig().resolve(32, 40)[0].neighbours == 30  # 32 per fold
    assert MapConfig().resolve(32, 20)[0].neighbours == 16
    assert MapConfig().resolve(16, 5)[0].neighbours == 0  # 4 per fold: too few
    assert MapConfig().resolve(128, 5000)[0].alignment_tolerance == 2
    assert MapConfig().resolve(256, 5000)[0].alignment_tolerance == 3
    # A value given wins, but never beyond what a fold holds.
    assert MapConfig(alignment_tolerance=2, neighbours=50).resolve(32, 20)[0] == MapConfig(
        alignment_tolerance=2, neighbours=16)


def test_bad_alignment_tolerance_names_the_field():
    for value in (-1, 4, True, 1.5):
        with pytest.raises(ConfigError, match="map.alignment_tolerance"):
            MapConfig(alignment_tolerance=value)
    with pytest.raises(ConfigError, match="map.alignment_tolerance"):
        MapConfig(alignment_tolerance=3, kernel_size=1).check_image_size(6)
    with pytest.raises(ConfigError, match="map.kernel_size.*image size 16"):
        MapConfig(kernel_size=17).check_image_size(16)


def _two_looks(size=6, per_look=12, seed=0):
    """Reference maps of two looks: look A (latent near +1) varies in the left half,
    look B (latent near -1) in the right half."""
    rng = np.random.default_rng(seed)
    latents = np.concatenate([1 + 0.05 * rng.standard_normal((per_look, 3)),
                              -1 + 0.05 * rng.standard_normal((per_look, 3))]).astype(np.float32)
    maps = np.full((2 * per_look, size, size), 0.1, np.float32)
    maps[:per_look, :, :size // 2] += 0.3 * rng.random((per_look, size, size // 2))
    maps[per_look:, :, size // 2:] += 0.3 * rng.random((per_look, size, size // 2))
    return latents, maps


def test_neighbour_statistics_judge_each_look_by_its_own_kind():
    latents, maps = _two_looks()
    config = MapConfig(kernel="box", kernel_size=1, alignment_tolerance=0, neighbours=12,
                       prior_images=0.0)
    calibrated = map_calibration.calibrate(np.zeros((24, 6, 6, 1), np.float32), -maps[..., None],
                                        config, latents=latents)
    statistics = calibrated.statistics
    assert statistics.reference_maps.shape == (24, 6, 6)
    mean, std = anomaly_maps.neighbour_statistics(latents[[0, 12]], statistics)
    np.testing.assert_allclose(mean[0, ..., 0], maps[:12].mean(0), rtol=1e-5)
    np.testing.assert_allclose(mean[1, ..., 0], maps[12:].mean(0), rtol=1e-5)
    # The same bright pixel on the quiet side of each look: far out for its own kind,
    # unremarkable in the other look's busy half, where one set of statistics would
    # have put it.
    image = np.zeros((1, 6, 6, 1), np.float32)
    spot = np.full((1, 6, 6, 1), -0.1, np.float32)
    spot[0, 2, 4, 0] = -0.4  # residual 0.4 at (2, 4): the right half
    look_a = anomaly_maps.score_maps(image, spot, statistics, latents=latents[[0]])
    look_b = anomaly_maps.score_maps(image, spot, statistics, latents=latents[[12]])
    assert look_a["map_max"][0] > 3 * look_b["map_max"][0]
    assert (look_a["map_x"][0], look_a["map_y"][0]) == (4, 2)


def test_neighbour_statistics_round_trip_and_refuse_damage():
    latents, maps = _two_looks()
    config = MapConfig(kernel="box", kernel_size=1, alignment_tolerance=0, neighbours=5)
    statistics = map_calibration.calibrate(np.zeros((24, 6, 6, 1), np.float32), -maps[..., None],
                                        config, latents=latents).statistics
    stored = json.loads(json.dumps(statistics.to_dict()))
    again = MapStatistics.from_dict(stored, image_size=6)
    np.testing.assert_array_equal(again.reference_maps, statistics.reference_maps)
    np.testing.assert_array_equal(again.reference_latents, statistics.reference_latents)
    assert again.deviation_floor == statistics.deviation_floor > 0
    broken = json.loads(json.dumps(stored))
    broken["references"]["maps"]["float32_base64"] = "not base64!"
    with pytest.raises(ValueError, match="'references' must hold M latents and M maps of 6x6"):
        MapStatistics.from_dict(broken)
    broken.pop("references")
    with pytest.raises(ValueError, match="'references' is missing: neighbours=5"):
        MapStatistics.from_dict(broken)
    with pytest.raises(ValueError, match="need one latent per good image"):
        map_calibration.calibrate(np.zeros((24, 6, 6, 1), np.float32), -maps[..., None], config)


def test_neighbour_scores_do_not_depend_on_the_batch():
    latents, maps = _two_looks(size=8)
    config = MapConfig(neighbours=7)
    rng = np.random.default_rng(3)
    statistics = map_calibration.calibrate(rng.uniform(-1, 1, (24, 8, 8, 1)).astype(np.float32),
                                        rng.uniform(-1, 1, (24, 8, 8, 1)).astype(np.float32),
                                        config, latents=latents).statistics
    images = rng.uniform(-1, 1, (9, 8, 8, 1)).astype(np.float32)
    recons = rng.uniform(-1, 1, (9, 8, 8, 1)).astype(np.float32)
    query = (latents[:9] + 0.01).astype(np.float32)
    together = anomaly_maps.score_maps(images, recons, statistics, latents=query)
    for i in (0, 4, 8):
        alone = anomaly_maps.score_maps(images[i:i + 1], recons[i:i + 1], statistics,
                                        latents=query[i:i + 1])
        # Equal up to float rounding: oneDNN's smoothing convolution rounds differently
        # for other batch sizes on AVX-512 CPUs (1e-7 here); other neighbours would move
        # the map by whole units.
        np.testing.assert_allclose(alone["standardised_map"][0],
                                   together["standardised_map"][i], rtol=1e-5, atol=1e-5)
