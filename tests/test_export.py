import csv
import io
import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import run_main
from ic_anogan import calibration, export, scoring, train
from ic_anogan.config import SearchConfig, search_config_for_mode
from ic_anogan.search import LatentSearch

SEARCH = SearchConfig(steps=5)


@pytest.fixture(scope="session")
def exported(trained_model_dir, tmp_path_factory):
    model = train.load_trained_model(trained_model_dir["model_dir"])
    threshold = calibration.read(trained_model_dir["model_dir"])["threshold"]
    base = str(tmp_path_factory.mktemp("export"))
    path = export.export_saved_model(model, base, SEARCH, threshold, warmup_batch_sizes=(1, 2))
    return {"model": model, "path": path, "base": base, "threshold": threshold}


def _pixels(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 1), dtype=np.uint8)


def _png(gray):
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG")
    return buffer.getvalue()


def _in_process(model, pixels):
    search = LatentSearch(model.generator, model.features, SEARCH)
    return {k: v.numpy() for k, v in search.score(pixels.astype(np.float32) / 255.0 * 2 - 1).items()}


@pytest.mark.parametrize("n", [1, 3])
def test_round_trip_equals_the_in_process_search(exported, n):
    loaded = tf.saved_model.load(exported["path"])
    pixels = _pixels(n)
    served = {k: v.numpy() for k, v in loaded.signatures["serving_default"](
        images=tf.constant(pixels)).items()}
    assert set(served) == set(export.SCORE_OUTPUTS)
    reference = _in_process(exported["model"], pixels)
    for key in ("anomaly_score", "residual_score", "discrimination_score", "anomaly_map"):
        np.testing.assert_allclose(served[key], reference[key], rtol=1e-5, atol=1e-5)
    expected_u8 = np.round((np.clip(reference["reconstruction"], -1, 1) + 1) * 127.5)
    np.testing.assert_allclose(served["reconstruction"].astype(float), expected_u8, atol=1)
    assert served["reconstruction"].dtype == np.uint8
    np.testing.assert_array_equal(served["is_anomaly"],
                                  reference["anomaly_score"] > exported["threshold"])


def test_versions_are_never_overwritten(exported):
    base = exported["base"]
    assert os.path.basename(exported["path"]) == "1"
    os.makedirs(os.path.join(base, "7"))
    assert export.next_version(base) == 8
    second = export.export_saved_model(exported["model"], base, SEARCH, None,
                                       warmup_batch_sizes=())
    assert os.path.basename(second) == "8"
    assert not [d for d in os.listdir(base) if d.startswith(".")]  # no temp folder left
    with pytest.raises(export.ExportError, match="found a file"):
        export.export_saved_model(exported["model"], os.path.join(second, "saved_model.pb"),
                                  SEARCH, None)


def test_settings_asset_and_metadata_signature(exported):
    settings = export.read_settings(exported["path"])
    assert settings["search"]["steps"] == 5 and settings["threshold"] == exported["threshold"]
    meta = tf.saved_model.load(exported["path"]).signatures["metadata"]()
    assert int(meta["search_steps"]) == 5 and int(meta["image_size"]) == 16
    assert float(meta["threshold"]) == pytest.approx(exported["threshold"])
    assert json.loads(meta["settings_json"].numpy().decode())["search"]["restarts"] == 1


def test_encoded_equals_uint8_on_the_same_pixels(exported):
    loaded = tf.saved_model.load(exported["path"])
    pixels = _pixels(2, seed=5)
    from_u8 = loaded.signatures["serving_default"](images=tf.constant(pixels))
    from_png = loaded.signatures["score_encoded"](
        image_bytes=tf.constant([_png(p[..., 0]) for p in pixels]))
    for key in export.SCORE_OUTPUTS:
        np.testing.assert_allclose(from_png[key].numpy(), from_u8[key].numpy(), rtol=1e-5,
                                   atol=1e-5)


def test_encoded_preprocessing_matches_the_training_pipeline(exported, tmp_path):
    from ic_anogan import data
    rng = np.random.default_rng(2)
    colour = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "c.png")
    loaded = tf.saved_model.load(exported["path"])
    served = loaded.signatures["score_encoded"](
        image_bytes=tf.constant([(tmp_path / "c.png").read_bytes()]))
    model_input = data.load_folder(str(tmp_path), 16).images
    reference = loaded.signatures["score_float"](images=tf.constant(model_input))
    np.testing.assert_allclose(served["anomaly_score"], reference["anomaly_score"], rtol=1e-4)


def test_concurrent_calls_equal_serial_calls(exported):
    loaded = tf.saved_model.load(exported["path"])
    batches = [_pixels(2, seed=s) for s in range(4)]
    serial = [loaded.signatures["serving_default"](images=tf.constant(b))["anomaly_score"].numpy()
              for b in batches]
    results = [None] * 4

    def call(i):
        results[i] = loaded.signatures["serving_default"](
            images=tf.constant(batches[i]))["anomaly_score"].numpy()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(serial, results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape, message", [
    ((2, 8, 8, 1), "got another height/width"),
    ((2, 16, 16, 3), "got a channel count other than 1"),
    ((16, 16, 1), "got another rank"),
])
def test_bad_input_shapes_give_the_documented_error(exported, shape, message):
    loaded = tf.saved_model.load(exported["path"])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"expected a uint8 tensor of shape \[N, 16, 16, 1\]") as error:
        loaded.signatures["serving_default"](images=tf.zeros(shape, tf.uint8))
    assert message in str(error.value)


def test_fresh_process_without_ic_anogan(exported):
    pixels = _pixels(2, seed=9)
    np.save(os.path.join(os.path.dirname(exported["path"]), "in.npy"), pixels)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["ic_anogan"] = None  # importing the package must not be needed
        import json, numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({exported['path']!r})
        pixels = np.load({os.path.join(os.path.dirname(exported['path']), 'in.npy')!r})
        out = loaded.signatures["serving_default"](images=tf.constant(pixels))
        print("RESULT", json.dumps(out["anomaly_score"].numpy().tolist()))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(env, TF_CPP_MIN_LOG_LEVEL="2"), cwd="/", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    scores = json.loads(done.stdout.split("RESULT ")[1])
    np.testing.assert_allclose(scores, _in_process(exported["model"], pixels)["anomaly_score"],
                               rtol=1e-5)


def _saved_model_cli(*args):
    return subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", *args],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def test_saved_model_cli_show_lists_the_signatures(exported):
    shown = _saved_model_cli("show", "--dir", exported["path"], "--all")
    assert shown.returncode == 0, shown.stderr[-2000:]
    text = shown.stdout
    for name in export.SIGNATURES:
        assert f"signature_def['{name}']" in text
    block = text.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    assert "inputs['images']" in block and "DT_UINT8" in block
    assert "outputs['reconstruction']" in block and "outputs['is_anomaly']" in block
    encoded = text.split("signature_def['score_encoded']")[1].split("signature_def[")[0]
    assert "inputs['image_bytes']" in encoded and "DT_STRING" in encoded


def _parse_cli_scores(stdout):
    text = stdout.split("Result for output key anomaly_score:")[1].split("Result for")[0]
    return np.array([float(v) for v in text.replace("[", " ").replace("]", " ").split()])


def test_saved_model_cli_run_on_both_signatures(exported, tmp_path):
    """saved_model_cli run loads through the session-based loader, as TF Serving does."""
    pixels = _pixels(2, seed=4)
    np.save(tmp_path / "in.npy", pixels)
    ran = _saved_model_cli("run", "--dir", exported["path"], "--tag_set", "serve",
                           "--signature_def", "serving_default", "--inputs",
                           f"images={tmp_path / 'in.npy'}")
    assert ran.returncode == 0, ran.stderr[-3000:]
    expected = _in_process(exported["model"], pixels)["anomaly_score"]
    np.testing.assert_allclose(_parse_cli_scores(ran.stdout), expected, rtol=1e-4)
    # Fixed-width bytes need no pickle; a PNG never ends in a NUL byte, so none is lost.
    np.save(tmp_path / "png.npy", np.array([_png(p[..., 0]) for p in pixels], dtype=bytes))
    encoded = _saved_model_cli("run", "--dir", exported["path"], "--tag_set", "serve",
                               "--signature_def", "score_encoded", "--inputs",
                               f"image_bytes={tmp_path / 'png.npy'}")
    assert encoded.returncode == 0, encoded.stderr[-3000:]
    np.testing.assert_allclose(_parse_cli_scores(encoded.stdout), expected, rtol=1e-4)


def test_warmup_records(exported):
    path = os.path.join(exported["path"], "assets.extra", export.WARMUP_FILE)
    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    # (serving_default, score_encoded) and the mode's (search_images, search_encoded),
    # for batch sizes 1 and 2.
    assert len(records) == 8
    assert b"serving_default" in records[0] and b"images" in records[0]
    assert b"score_encoded" in records[1] and b"\x89PNG" in records[1]
    assert b"search_images" in records[2] and b"search_encoded" in records[3]
    # The embedded TensorProto parses back to the pixels' shape.
    assert export.prediction_log("s", {"x": np.zeros((1, 2), np.uint8)}).startswith(b"\x32")


def _score_directly_and_through_the_export(model_dir, tmp_path, *common, export_args=(),
                                           direct_args=(), served_args=()):
    """Exports, then scores with the Python search and with the export; returns both CSVs."""
    exported = run_main("score_main.py", f"--model_dir={model_dir}",
                        f"--export_dir={tmp_path / 'serving'}", *export_args)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert f"exported SavedModel to {tmp_path / 'serving' / '1'}" in exported.stdout
    direct = run_main("score_main.py", f"--model_dir={model_dir}",
                      f"--output_dir={tmp_path / 'direct'}", *common, *direct_args)
    served = run_main("score_main.py", f"--saved_model={tmp_path / 'serving' / '1'}",
                      f"--output_dir={tmp_path / 'served'}", *common, *served_args)
    assert direct.returncode == 0 and served.returncode == 0, served.stderr[-3000:]
    rows = [list(csv.DictReader(open(tmp_path / d / "scores.csv"))) for d in ("direct", "served")]
    assert len(rows[0]) == len(rows[1])
    for a, b in zip(*rows):
        assert (a["path"], a["label"], a["is_anomaly"]) == (b["path"], b["label"], b["is_anomaly"])
        assert float(a["anomaly_score"]) == pytest.approx(float(b["anomaly_score"]), rel=1e-4)
    return rows


def test_score_main_exports_and_scores_through_the_export(trained_model_dir, tmp_path):
    rows = _score_directly_and_through_the_export(
        trained_model_dir["model_dir"], tmp_path, "--synthetic_counts=good:4,short_fill:3",
        f"--log_dir={tmp_path / 'tb'}")
    assert len(rows[0]) == 7
    bad = run_main("score_main.py", f"--saved_model={tmp_path / 'serving' / '1'}",
                   "--search_steps=9")
    assert bad.returncode != 0 and "baked-in settings" in bad.stderr


def test_score_main_through_the_export_on_image_files(trained_model_dir, tmp_path):
    """Files go through score_encoded, decoded and resized in the graph."""
    rng = np.random.default_rng(11)
    (tmp_path / "images").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(
            tmp_path / "images" / f"part_{i}.png")
    rows = _score_directly_and_through_the_export(
        trained_model_dir["model_dir"], tmp_path, f"--data_dir={tmp_path / 'images'}",
        f"--log_dir={tmp_path / 'tb'}")
    assert len(rows[0]) == 3 and all(r["label"] == "" for r in rows[1])


# -- one export, every scoring mode ------------------------------------------

MODE_CONFIGS = {"encoder_search": search_config_for_mode("encoder_search", SEARCH, steps=4),
                "search": SEARCH, "encoder": search_config_for_mode("encoder")}


@pytest.fixture(scope="session")
def exported_modes(trained_model_dir, tmp_path_factory):
    """encoder_search as the default mode, search and encoder beside it."""
    model_dir = trained_model_dir["model_dir"]
    model = train.load_trained_model(model_dir)
    thresholds = {m: calibration.read(model_dir, m)["threshold"] for m in MODE_CONFIGS}
    base = str(tmp_path_factory.mktemp("export_modes"))
    configs = list(MODE_CONFIGS.values())
    path = export.export_saved_model(
        model, base, configs[0], thresholds["encoder_search"], warmup_batch_sizes=(1,),
        more_modes=[(c, thresholds[c.mode]) for c in configs[1:]])
    return {"model": model, "path": path, "thresholds": thresholds}


def _mode_reference(model, mode, pixels):
    search = scoring.make_search(model, MODE_CONFIGS[mode])
    return {k: v.numpy()
            for k, v in search.score(pixels.astype(np.float32) / 255.0 * 2 - 1).items()}


@pytest.mark.parametrize("mode", list(MODE_CONFIGS))
@pytest.mark.parametrize("n", [1, 3])
def test_every_mode_round_trips(exported_modes, mode, n):
    loaded = tf.saved_model.load(exported_modes["path"])
    assert set(export.signature_names(list(MODE_CONFIGS))) == set(loaded.signatures)
    pixels = _pixels(n, seed=20 + n)
    reference = _mode_reference(exported_modes["model"], mode, pixels)
    served = loaded.signatures[f"{mode}_images"](images=tf.constant(pixels))
    from_png = loaded.signatures[f"{mode}_encoded"](
        image_bytes=tf.constant([_png(p[..., 0]) for p in pixels]))
    for outputs in (served, from_png):
        np.testing.assert_allclose(outputs["anomaly_score"].numpy(), reference["anomaly_score"],
                                   rtol=1e-5)
        np.testing.assert_allclose(outputs["anomaly_map"].numpy(), reference["anomaly_map"],
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(
            outputs["is_anomaly"].numpy(),
            reference["anomaly_score"] > exported_modes["thresholds"][mode])
    if mode == "encoder_search":  # the default mode is also serving_default
        default = loaded.signatures["serving_default"](images=tf.constant(pixels))
        np.testing.assert_array_equal(default["anomaly_score"].numpy(),
                                      served["anomaly_score"].numpy())


def test_modes_give_different_scores_and_settings_describe_them(exported_modes):
    loaded = tf.saved_model.load(exported_modes["path"])
    pixels = _pixels(2, seed=30)
    scores = {m: loaded.signatures[f"{m}_images"](images=tf.constant(pixels))[
        "anomaly_score"].numpy() for m in MODE_CONFIGS}
    assert not np.allclose(scores["encoder"], scores["search"])
    assert np.all(scores["encoder_search"] <= scores["encoder"] * (1 + 1e-6))
    settings = export.read_settings(exported_modes["path"])
    assert settings["mode"] == "encoder_search" and settings["search"]["steps"] == 4
    assert {m: v["search"]["steps"] for m, v in settings["modes"].items()} == {
        "encoder_search": 4, "search": 5, "encoder": 0}
    assert settings["modes"]["encoder"]["threshold"] == exported_modes["thresholds"]["encoder"]
    meta = loaded.signatures["metadata"]()
    assert meta["mode"].numpy() == b"encoder_search"
    assert [m.decode() for m in meta["modes"].numpy()] == list(MODE_CONFIGS)


def test_encoder_mode_in_a_fresh_process_and_saved_model_cli(exported_modes, tmp_path):
    pixels = _pixels(2, seed=31)
    np.save(tmp_path / "in.npy", pixels)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["ic_anogan"] = None
        import json, numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({exported_modes['path']!r})
        out = loaded.signatures["encoder_images"](images=tf.constant(np.load({str(tmp_path / 'in.npy')!r})))
        print("RESULT", json.dumps(out["anomaly_score"].numpy().tolist()))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(env, TF_CPP_MIN_LOG_LEVEL="2"), cwd="/", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = _mode_reference(exported_modes["model"], "encoder", pixels)["anomaly_score"]
    np.testing.assert_allclose(json.loads(done.stdout.split("RESULT ")[1]), expected, rtol=1e-5)
    ran = _saved_model_cli("run", "--dir", exported_modes["path"], "--tag_set", "serve",
                           "--signature_def", "encoder_images", "--inputs",
                           f"images={tmp_path / 'in.npy'}")
    assert ran.returncode == 0, ran.stderr[-3000:]
    np.testing.assert_allclose(_parse_cli_scores(ran.stdout), expected, rtol=1e-4)


def test_export_refuses_modes_it_cannot_serve(exported_modes, trained_model_dir, tmp_path):
    import dataclasses
    model = exported_modes["model"]
    without_encoder = dataclasses.replace(model, encoder=None)
    with pytest.raises(export.ExportError, match="cannot export mode.* encoder.*no encoder"):
        export.export_saved_model(without_encoder, str(tmp_path / "a"),
                                  MODE_CONFIGS["encoder"], None)
    with pytest.raises(export.ExportError, match="each mode can be exported once"):
        export.export_saved_model(model, str(tmp_path / "b"), SEARCH, None,
                                  more_modes=[(SEARCH, None)])
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")


@pytest.mark.parametrize("served_mode", [None, "search"])
def test_score_main_exports_several_modes(trained_model_dir, tmp_path, served_mode):
    """--mode=encoder,search exports both; --saved_model scores the default or --mode."""
    mode = served_mode or "encoder"
    rows = _score_directly_and_through_the_export(
        trained_model_dir["model_dir"], tmp_path, "--synthetic_counts=good:3,short_fill:2",
        f"--log_dir={tmp_path / 'tb'}", export_args=["--mode=encoder,search"],
        direct_args=[f"--mode={mode}"],
        served_args=[f"--mode={served_mode}"] if served_mode else [])
    assert len(rows[0]) == 5
    metrics_json = json.load(open(tmp_path / "served" / "metrics.json"))
    assert metrics_json["mode"] == mode
    bad = run_main("score_main.py", f"--saved_model={tmp_path / 'serving' / '1'}",
                   "--mode=encoder_search", f"--output_dir={tmp_path / 'x'}")
    assert bad.returncode == 1 and "supports only encoder, search" in bad.stderr
