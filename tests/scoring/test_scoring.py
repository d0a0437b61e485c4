import csv
import json
import os

import numpy as np
import pytest
from conftest import run_main, tensorboard_tags, write_image
from PIL import Image

from ic_anogan.config import DataConfig, SearchConfig
from ic_anogan.core import runtime
from ic_anogan.data import image_set, loading as data
from ic_anogan.jobs import score_job
from ic_anogan.jobs.score_request import (MapOverrides, Recalibration, RequestError,
                                          ScoreRequest, ScoringError, SearchOverrides)
from ic_anogan.models import model_dir as model_dir_lib
from ic_anogan.reporting import plots, report as report_lib
from ic_anogan.scoring import calibration, outputs, scorer as scoring, thresholds

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png(path):
    with open(path, "rb") as f:
        head = f.read(8)
    return head == PNG_MAGIC and os.path.getsize(path) > 1000


def test_figures_are_written(tmp_path, rng):
    scores = np.concatenate([rng.normal(0, 1, 30), rng.normal(2, 1, 20)])
    labels = np.array([0] * 30 + [1] * 20)
    types = ["good"] * 30 + ["short_fill"] * 10 + ["void"] * 10
    assert _png(plots.score_histogram(scores, types, str(tmp_path / "h.png"), threshold=1.5))
    assert _png(plots.roc_pr_curves(labels, scores, str(tmp_path / "r.png")))
    images = rng.uniform(-1, 1, (3, 16, 16, 1))
    assert _png(plots.reconstruction_grid(
        plots.GridRows(images, images * 0.5, np.abs(images * 0.5), ["a", "b", "c"]),
        str(tmp_path / "g.png")))
    masks = (images > 0.5).astype(np.float32)
    rows = plots.GridRows(images, images * 0.5, np.abs(images * 0.5), ["a", "b", "c"],
                          standardised_maps=np.abs(images) * 4, defect_masks=masks,
                          true_masks=masks, maxima=np.array([[1, 2], [3, 4], [5, 6]]))
    assert _png(plots.reconstruction_grid(rows, str(tmp_path / "g4.png")))
    overlays = plots.defect_overlays(rows, ["x/a.png", "b", "synthetic:test:void:3"],
                                     str(tmp_path / "overlays"))
    assert [os.path.basename(p) for p in overlays] == [
        "00_a.png", "01_b.png", "02_synthetic_test_void_3.png"]
    assert Image.open(overlays[0]).size == (64, 64)
    assert sorted(os.listdir(tmp_path)) == ["g.png", "g4.png", "h.png", "overlays",
                                            "r.png"]  # no temp files left


def test_scorer_batches_and_reports_progress(trained_model_dir):
    model = model_dir_lib.load_trained_model(trained_model_dir["model_dir"])
    heldout = trained_model_dir["result"].heldout
    seen = []
    out = scoring.SearchScorer(model, SearchConfig(steps=6), chunk_steps=4).score(
        heldout, batch_size=3, progress=seen.append)
    assert seen == [4 * 3, 6 * 3, 18 + 4 * 1, 18 + 6 * 1]
    whole = scoring.SearchScorer(model, SearchConfig(steps=6)).score(heldout, batch_size=64)
    np.testing.assert_allclose(out.anomaly_score, whole.anomaly_score, rtol=1e-4)
    assert out.latent.shape == (4, 8) and out.map_scores is None
    with pytest.raises(ValueError, match="batch_size=0: expected a positive integer"):
        scoring.SearchScorer(model, SearchConfig(steps=1)).score(heldout, batch_size=0)


def test_calibration_is_stored_and_reread(trained_model_dir):
    record = calibration.read(trained_model_dir["model_dir"])
    assert record["count"] == 4 and record["percentile"] == 99.0
    # Four scores are far too few for their own 99th percentile: the fitted tail decides,
    # and the record says what the threshold rests on.
    assert record["threshold"] == pytest.approx(
        thresholds.estimate(record["scores"], 99).threshold)
    assert record["threshold_rule"] == "fitted" and record["evidence"]["rule"] == "fitted"
    assert record["evidence"]["count"] == 4
    assert record["warnings"] and "rest on 4 good images" in record["warnings"][0]
    assert record.search_config == SearchConfig(steps=5)
    assert record.mismatched_settings(SearchConfig(steps=5)) == []
    assert record.mismatched_settings(SearchConfig(steps=9)) == ["steps"]


def test_report_files(trained_model_dir, tmp_path):
    model = model_dir_lib.load_trained_model(trained_model_dir["model_dir"])
    images = data.load_scoring_set(DataConfig(synthetic_counts={"good": 6, "short_fill": 4,
                                                                "void": 2}), 16)
    scored = scoring.SearchScorer(model, SearchConfig(steps=4)).score(images, 8)
    report = report_lib.write_report(str(tmp_path / "out"), images, scored, threshold=100.0,
                                     log_dir=str(tmp_path / "tb"))
    rows = list(csv.DictReader(open(report.scores_csv)))
    assert list(rows[0]) == list(outputs.CSV_COLUMNS)
    assert len(rows) == 12 and rows[0]["label"] == "0" and rows[-1]["defect_type"] == "void"
    assert all(r["is_anomaly"] == str(int(float(r["anomaly_score"]) > 100.0)) for r in rows)
    stored = json.load(open(report.metrics_json))
    assert stored["counts"] == {"good": 6, "short_fill": 4, "void": 2}
    assert 0 <= stored["auroc"] <= 1 and 0 <= stored["pixel_auroc"] <= 1
    assert set(os.listdir(tmp_path / "out")) == {
        "scores.csv", "metrics.json", "roc_pr.png", "score_histogram.png",
        "grid_most_anomalous.png", "grid_good_sample.png"}
    assert all(_png(f) for f in report.figures)
    assert {"anomaly_score/all", "anomaly_score/good", "anomaly_score/short_fill",
            "metrics/auroc", "metrics/pixel_auroc", "pr_curve/pr_curves",
            "reconstructions/most_anomalous", "reconstructions/good_sample"} <= tensorboard_tags(
                str(tmp_path / "tb" / "score"))


def test_unlabelled_folder_gets_empty_labels(trained_model_dir, tmp_path, rng):
    for i in range(3):
        write_image(str(tmp_path / "in" / f"{i}.png"),
                    rng.integers(0, 256, (40, 40), dtype=np.uint8))
    model = model_dir_lib.load_trained_model(trained_model_dir["model_dir"])
    images = data.load_scoring_set(DataConfig(data_dir=str(tmp_path / "in")), 16)
    scored = scoring.SearchScorer(model, SearchConfig(steps=2)).score(images, 8)
    report = report_lib.write_report(str(tmp_path / "out"), images, scored, threshold=None)
    rows = list(csv.DictReader(open(report.scores_csv)))
    assert [r["label"] for r in rows] == ["", "", ""]
    assert report.metrics_json is None
    assert not os.path.exists(tmp_path / "out" / "metrics.json")


def test_score_main_end_to_end(trained_model_dir, tmp_path):
    """The binary's smoke test: flags -> request -> one library call -> printed summary."""
    out = tmp_path / "out"
    done = run_main("score_main.py", f"--model_dir={trained_model_dir['model_dir']}",
                    f"--output_dir={out}", f"--log_dir={tmp_path / 'tb'}",
                    "--synthetic_counts=good:8,short_fill:6", "--batch_size=8",
                    unset=["TF_ENABLE_ONEDNN_OPTS"])
    assert done.returncode == 0, done.stderr[-3000:]
    if runtime.is_x86():  # the binary turned oneDNN on, and said so once
        assert done.stderr.count("oneDNN on (TF_ENABLE_ONEDNN_OPTS=1 set by ic_anogan)") == 1
    assert "AUROC" in done.stdout and f"scores: {out}/scores.csv" in done.stdout
    stored = json.load(open(out / "metrics.json"))
    # A model with an encoder scores in encoder_search mode by default, with
    # that mode's calibrated settings and threshold.
    assert stored["mode"] == "encoder_search"
    assert stored["search"]["steps"] == 5
    assert stored["counts"] == {"good": 8, "short_fill": 6}
    rows = list(csv.DictReader(open(out / "scores.csv")))
    record = calibration.read(trained_model_dir["model_dir"], "encoder_search")
    # map_max decides by default, against its own threshold.
    threshold = record["image_scores"]["map_max"]["threshold"]
    assert stored["image_score"] == "map_max" and stored["threshold"] == threshold
    assert all(r["is_anomaly"] == str(int(float(r["map_score"]) > threshold)) for r in rows)


def _run(tmp_path, name, **fields):
    fields.setdefault("log_dir", str(tmp_path / "tb"))
    return score_job.run(ScoreRequest(output_dir=str(tmp_path / name), **fields))


def test_recalibration_and_overrides(trained_model_dir, tmp_path, rng, caplog):
    import shutil
    model_dir = str(tmp_path / "model")
    shutil.copytree(trained_model_dir["model_dir"], model_dir)
    for i in range(10):
        write_image(str(tmp_path / "good" / f"{i}.png"),
                    rng.integers(0, 256, (16, 16), dtype=np.uint8))
    caplog.set_level("INFO")
    _run(tmp_path, "o", model_dir=model_dir, modes=["search"],
         data=DataConfig(synthetic_counts={"good": 4, "void": 4}),
         overrides=SearchOverrides(steps=3),
         recalibration=Recalibration(
             DataConfig(data_dir=str(tmp_path / "good")), percentile=50.0,
             map_overrides=MapOverrides(kernel_size=5, residual="signed", pixel_percentile=99.0,
                                        area_scales=2)))
    record = calibration.read(model_dir)
    assert record["source"] == str(tmp_path / "good") and record["percentile"] == 50.0
    assert record["search"]["steps"] == 3
    # The map statistics are recomputed on the new good images, with the settings given.
    assert record["map"]["count"] == 10
    assert record["map"]["config"]["kernel_size"] == 5
    assert record["map"]["config"]["residual"] == "signed"
    assert record["map"]["config"]["pixel_percentile"] == 99
    # Two coarser scales: an offset and a spread for each of the three.
    assert record["map"]["config"]["area_scales"] == 2
    assert np.shape(record["map"]["area_normalisation"]) == (3, 2)
    assert "map statistics on 10 good images" in caplog.text
    assert f"on the 10 images of {tmp_path / 'good'}" in caplog.text
    _run(tmp_path, "p", model_dir=model_dir, modes=["search"],
         data=DataConfig(synthetic_counts={"good": 2, "void": 2}),
         overrides=SearchOverrides(steps=2))
    assert "calibrated with other search settings (steps)" in caplog.text
    _run(tmp_path, "q", model_dir=model_dir, threshold=1e9,
         data=DataConfig(synthetic_counts={"good": 2, "void": 2}))
    rows = list(csv.DictReader(open(tmp_path / "q" / "scores.csv")))
    assert [r["is_anomaly"] for r in rows] == ["0"] * 4


def test_score_main_refuses_bad_flags_before_any_work(tmp_path):
    """Refused while parsing flags: no model is loaded, TensorFlow is not even imported."""
    cases = [
        (["--model_dir=m", "--map_kernel_size=5"],
         "set how the map statistics are computed, at calibration: give them with "
         "--calibrate_dir"),
        (["--model_dir=m", f"--calibrate_dir={tmp_path}", "--map_kernel_size=4"],
         "--map_kernel_size=4: expected an odd integer >= 1"),
        (["--model_dir=m", "--threshold=abc"], "--threshold='abc': expected a number"),
        (["--model_dir=m", "--search_batch_size=0"],
         "--search_batch_size=0: expected a positive integer"),
        (["--model_dir=m", "--search_steps=-1"], "--search_steps=-1: expected an integer >= 0"),
        (["--model_dir=m", "--synthetic_counts=good"], "--synthetic_counts: 'good' is not "
                                                        "type:count"),
        (["--model_dir=m", "--saved_model=e"],
         "--model_dir, --saved_model: give one of them, not both"),
        (["--saved_model=e", "--search_steps=3"], "--saved_model=e: an export scores with its "
                                                  "baked-in settings"),
        (["--model_dir=m", "--seed=1", "--search_seed=2"],
         "--seed=1 and --search_seed=2: --seed is the old name of --search_seed; give one"),
        # The old name still works, and a bad value is named by the flag it sets.
        (["--model_dir=m", "--learning_rate=inf"],
         "--search_learning_rate=inf: expected a finite positive number"),
    ]
    for args, message in cases:
        done = run_main("score_main.py", f"--output_dir={tmp_path / 'o'}", *args)
        assert done.returncode == 1 and message in done.stderr, (args, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
    assert ("WARNING: --learning_rate is deprecated; use --search_learning_rate"
            in done.stderr), done.stderr[-2000:]
    assert not os.path.exists(tmp_path / "o")


def test_bad_scoring_requests_are_refused_naming_what_to_change(trained_model_dir, tmp_path):
    import shutil
    model_dir = trained_model_dir["model_dir"]
    bare = str(tmp_path / "bare")  # the same GAN without its encoder
    shutil.copytree(model_dir, bare)
    os.remove(os.path.join(bare, "encoder.weights.h5"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    cases = [
        (dict(model_dir=str(tmp_path / "none")), model_dir_lib.ModelDirError,
         "none: model directory not found"),
        (dict(model_dir=model_dir, data=DataConfig(data_dir=str(tmp_path / "missing"))),
         image_set.DataError, "missing: folder not found"),
        (dict(model_dir=model_dir, data=DataConfig(synthetic_counts={"good": 2, "crack": 1})),
         ValueError, "unknown defect type 'crack'"),
        (dict(model_dir=model_dir, data=DataConfig(data_dir=str(tmp_path / "bad"))),
         image_set.DataError, "x.png: not a decodable"),
        (dict(model_dir=model_dir, modes=["fastest"]), RequestError,
         "score.modes=fastest: expected a list of"),
        (dict(model_dir=model_dir, modes=["search", "encoder"], threshold=3.0), RequestError,
         "score.threshold=3.0, score.modes=search,encoder: a threshold applies to one mode"),
        (dict(model_dir=bare, modes=["encoder"]), ScoringError,
         "score.modes=encoder: supports only search"),
    ]
    for fields, error, message in cases:
        with pytest.raises(error, match=message):
            _run(tmp_path, "o", **fields)
    assert not os.path.exists(tmp_path / "o")  # nothing written on failure


def test_every_mode_is_scored_and_compared(trained_model_dir, tmp_path):
    model_dir = trained_model_dir["model_dir"]
    result = _run(tmp_path, "out", model_dir=model_dir, modes=["all"], batch_size=8,
                  data=DataConfig(synthetic_counts={"good": 6, "short_fill": 4}))
    out = tmp_path / "out"
    scores = {}
    for mode, steps in (("search", 5), ("encoder", 0), ("encoder_search", 5)):
        stored = json.load(open(out / mode / "metrics.json"))
        assert stored["mode"] == mode and stored["search"]["steps"] == steps
        # The map score decides by default, against its own calibrated threshold.
        assert stored["image_score"] == "map_max"
        assert stored["threshold"] == calibration.read(model_dir, mode)["image_scores"][
            "map_max"]["threshold"]
        rows = list(csv.DictReader(open(out / mode / "scores.csv")))
        scores[mode] = np.array([float(r["anomaly_score"]) for r in rows])
        assert all(r["is_anomaly"] == str(int(float(r["map_score"]) > stored["threshold"]))
                   for r in rows)
        assert os.path.isdir(tmp_path / "tb" / mode / "score")
    assert np.all(scores["encoder_search"] <= scores["encoder"] * (1 + 1e-5))
    assert not np.allclose(scores["search"], scores["encoder"])
    table = report_lib.comparison_table([
        {"mode": m.decision.mode, "steps": m.decision.scorer.search_config.steps,
         "evaluation": m.report.evaluation, "seconds": m.seconds, "images": m.images}
        for m in result.modes]).splitlines()
    assert [(line.split("|")[1].strip(), line.split("|")[3].strip()) for line in table[2:11]] \
        == [(mode, score) for mode in ("encoder_search", "search", "encoder")
            for score in ("study", "map_max (decides)", "map_topk")]
    # "all" runs the default mode first (an export of "all" serves it as serving_default).
    assert [m.decision.mode for m in result.modes] == ["encoder_search", "search", "encoder"]
