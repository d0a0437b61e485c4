"""Decisions from few good images, end to end: the outliers named and drawn, the evidence in
every place a user reads the threshold, and map settings resolved again on recalibration."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
from conftest import write_image

from ic_anogan.config import DataConfig
from ic_anogan.data import synthetic
from ic_anogan.data.preprocessing import from_model_range
from ic_anogan.jobs import calibrate as calibrate_job, score_job
from ic_anogan.jobs.score_request import MapOverrides, Recalibration, ScoreRequest
from ic_anogan.models import model_dir as model_dir_lib
from ic_anogan.scoring import calibration
from ic_anogan.serving.client import ExportedModel

GOOD = 30


@pytest.fixture()
def model_copy(trained_model_dir, tmp_path):
    model_dir = str(tmp_path / "model")
    shutil.copytree(trained_model_dir["model_dir"], model_dir)
    return model_dir


@pytest.fixture(scope="module")
def good_folder_with_an_odd_part(tmp_path_factory):
    """30 good synthetic packages and one part that is nothing like them (noise), as a
    mislabelled or damaged part in a user's good set would be."""
    folder = tmp_path_factory.mktemp("good")
    rendered = synthetic.render_set("validation", 16, good=GOOD, seed=5)
    for i, image in enumerate(rendered.images):
        pixels = np.round(from_model_range(image[..., 0]) * 255).astype(np.uint8)
        write_image(str(folder / f"part{i:02d}.png"), pixels)
    noise = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    write_image(str(folder / "odd.png"), noise)
    return str(folder)


def _recalibrate(model_dir, good, tmp_path, modes=("search",), **recalibration):
    return score_job.run(ScoreRequest(
        model_dir=model_dir, modes=list(modes), output_dir=str(tmp_path / "out"),
        log_dir=str(tmp_path / "tb"), data=DataConfig(synthetic_counts={"good": 4, "void": 4}),
        recalibration=Recalibration(DataConfig(data_dir=good), **recalibration)))


def test_odd_part_is_named_drawn_and_left_out(model_copy, good_folder_with_an_odd_part,
                                              tmp_path, caplog):
    caplog.set_level(logging.INFO)
    _recalibrate(model_copy, good_folder_with_an_odd_part, tmp_path)
    record = calibration.read(model_copy, "search")
    odd = os.path.join(good_folder_with_an_odd_part, "odd.png")
    assert [o["image"] for o in record["outliers"]] == [odd]
    assert record["outlier_policy"] == "exclude"
    assert record["count"] == GOOD and record["images"] == GOOD + 1
    assert record["map"]["count"] == GOOD  # left out of the map statistics too
    assert "score far beyond the rest" in caplog.text and odd in caplog.text
    figure = os.path.join(model_copy, calibrate_job.OUTLIER_FIGURE.format(mode="search"))
    assert os.path.getsize(figure) > 1000
    # Fewer than 100 images: warned, and every threshold carries its evidence.
    assert "rest on 30 good images" in record["warnings"][0]
    for name, values in record["image_scores"].items():
        assert values["evidence"]["count"] == GOOD, name
        low, high = values["evidence"]["false_reject_interval"]
        assert 0 <= low <= high < 0.2
    # config.json says the same, per mode.
    summary = model_dir_lib.load_trained_model(model_copy).metadata["calibration"]["search"]
    assert summary["outliers"] == [odd]
    assert summary["thresholds"]["map_max"]["images"] == GOOD
    assert summary["thresholds"]["map_max"]["threshold"] == record["image_scores"][
        "map_max"]["threshold"]
    # The score report carries the deciding threshold's evidence.
    metrics = json.load(open(tmp_path / "out" / "metrics.json"))
    assert metrics["threshold_evidence"]["images"] == GOOD
    assert metrics["threshold_evidence"]["rule"] == "fitted"
    assert "rest on 30 good images" in metrics["threshold_evidence"]["warning"]
    # The map settings followed the new images: trained with 4 held-out 16 px images (no
    # tolerance, too few for neighbours), now 30 (the odd one left out), 24 per fold.
    assert record["map"]["config"]["neighbours"] == 24
    assert record["map_settings"]["neighbours"]["given"] is False
    assert record["map_settings"]["alignment_tolerance"]["value"] == 0
    # The export carries the evidence in its metadata.
    result = score_job.run(ScoreRequest(model_dir=model_copy, modes=["search"],
                                        export_dir=str(tmp_path / "serving")))
    exported = ExportedModel(result.export_path)
    evidence = exported.threshold_evidence["search"]
    assert evidence["images"] == GOOD and evidence["outliers"] == 1
    assert evidence == exported.settings["threshold_evidence"]


def test_kept_outliers_stay_in_and_are_still_named(model_copy, good_folder_with_an_odd_part,
                                                   tmp_path):
    _recalibrate(model_copy, good_folder_with_an_odd_part, tmp_path, outliers="keep",
                 threshold_rule="percentile")
    record = calibration.read(model_copy, "search")
    assert record["outlier_policy"] == "keep" and record["threshold_rule"] == "percentile"
    assert record["count"] == record["images"] == GOOD + 1
    assert record["outliers"][0]["image"].endswith("odd.png")
    # The sample percentile of 31 scores, the odd one among them.
    assert record["threshold"] == pytest.approx(np.percentile(record["scores"], 99))


def test_a_map_setting_given_is_kept_by_later_recalibrations(
        model_copy, good_folder_with_an_odd_part, tmp_path):
    stored = calibration.read(model_copy, "search")
    assert stored["map_settings"]["neighbours"]["value"] == 0  # 4 held-out images: none
    _recalibrate(model_copy, good_folder_with_an_odd_part, tmp_path,
                 map_overrides=MapOverrides(neighbours=5))
    _recalibrate(model_copy, good_folder_with_an_odd_part, tmp_path)
    kept = calibration.read(model_copy, "search")
    assert kept["map"]["config"]["neighbours"] == 5
    assert kept["map_settings"]["neighbours"] == {"value": 5, "given": True, "reason": "given"}
