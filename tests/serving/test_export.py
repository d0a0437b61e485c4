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
from conftest import MODES, run_main
from PIL import Image

from ic_anogan.config import DataConfig, SearchConfig, search_config_for_mode
from ic_anogan.data import image_files, preprocessing
from ic_anogan.data.image_set import ImageSet
from ic_anogan.jobs import score_job
from ic_anogan.jobs.score_request import RequestError, ScoreRequest, ScoringError
from ic_anogan.scoring import scorer as scoring
from ic_anogan.scoring.outputs import SERVED_OUTPUTS
from ic_anogan.scoring.search import LatentSearch
from ic_anogan.serving import export, signatures, warmup

SEARCH = SearchConfig(steps=5)


def _pixels(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 1), dtype=np.uint8)


def _png(gray):
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG")
    return buffer.getvalue()


def _in_process(model, pixels, config=SEARCH):
    search = LatentSearch(model.generator, model.features, config, encoder=model.encoder)
    return {k: v.numpy() for k, v in search.score(preprocessing.uint8_to_model(pixels)).items()}


@pytest.mark.parametrize("n", [1, 3])
def test_round_trip_equals_the_in_process_search(exported, n):
    loaded = exported["loaded"]
    pixels = _pixels(n)
    served = {k: v.numpy() for k, v in loaded.signatures["serving_default"](
        images=tf.constant(pixels)).items()}
    assert set(served) == set(SERVED_OUTPUTS)
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
    with pytest.raises(signatures.ExportError, match="found a file"):
        export.export_saved_model(exported["model"], os.path.join(second, "saved_model.pb"),
                                  SEARCH, None)


def test_settings_asset_and_metadata_signature(exported):
    settings = signatures.read_settings(exported["path"])
    assert settings["search"]["steps"] == 5 and settings["threshold"] == exported["threshold"]
    meta = exported["loaded"].signatures["metadata"]()
    assert int(meta["search_steps"]) == 5 and int(meta["image_size"]) == 16
    assert float(meta["threshold"]) == pytest.approx(exported["threshold"])
    assert json.loads(meta["settings_json"].numpy().decode())["search"]["restarts"] == 1


def test_encoded_equals_uint8_on_the_same_pixels(exported):
    loaded = exported["loaded"]
    pixels = _pixels(2, seed=5)
    from_u8 = loaded.signatures["serving_default"](images=tf.constant(pixels))
    from_png = loaded.signatures["score_encoded"](
        image_bytes=tf.constant([_png(p[..., 0]) for p in pixels]))
    for key in SERVED_OUTPUTS:
        np.testing.assert_allclose(from_png[key].numpy(), from_u8[key].numpy(), rtol=1e-5,
                                   atol=1e-5)


def test_encoded_preprocessing_matches_the_training_pipeline(exported, tmp_path):
    rng = np.random.default_rng(2)
    colour = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "c.png")
    loaded = exported["loaded"]
    served = loaded.signatures["score_encoded"](
        image_bytes=tf.constant([(tmp_path / "c.png").read_bytes()]))
    model_input = image_files.load_folder(str(tmp_path), 16).images
    reference = loaded.signatures["score_float"](images=tf.constant(model_input))
    np.testing.assert_allclose(served["anomaly_score"], reference["anomaly_score"], rtol=1e-4)


def test_concurrent_calls_equal_serial_calls(exported):
    loaded = exported["loaded"]
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
    loaded = exported["loaded"]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"expected a uint8 tensor of shape \[N, 16, 16, 1\]") as error:
        loaded.signatures["serving_default"](images=tf.zeros(shape, tf.uint8))
    assert message in str(error.value)


def test_saved_model_cli_show_lists_the_signatures(exported):
    """What `saved_model_cli show --all` prints (its function, here: it only reads the
    SavedModel's protobuf; `run` below starts the command itself)."""
    import contextlib

    from tensorflow.python.tools import saved_model_cli
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        saved_model_cli._show_all(exported["path"])
    text = printed.getvalue()
    for name in signatures.DEFAULT_SIGNATURES + (signatures.METADATA_SIGNATURE,):
        assert f"signature_def['{name}']" in text
    block = text.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    assert "inputs['images']" in block and "DT_UINT8" in block
    assert "outputs['reconstruction']" in block and "outputs['is_anomaly']" in block
    encoded = text.split("signature_def['score_encoded']")[1].split("signature_def[")[0]
    assert "inputs['image_bytes']" in encoded and "DT_STRING" in encoded


def _parse_cli_scores(stdout):
    text = stdout.split("Result for output key anomaly_score:")[1].split("Result for")[0]
    return np.array([float(v) for v in text.replace("[", " ").replace("]", " ").split()])


def test_saved_model_cli_run_on_the_bytes_signature(exported):
    """The bytes signature through the function `saved_model_cli run` calls, here: the
    session-based loader TF Serving uses (the command itself runs in the fresh-process
    test below)."""
    pixels = _pixels(2, seed=4)
    expected = _in_process(exported["model"], pixels)["anomaly_score"]
    encoded = _saved_model_cli_here(exported["path"], "score_encoded", {
        "image_bytes": np.array([_png(p[..., 0]) for p in pixels], dtype=object)})
    np.testing.assert_allclose(_parse_cli_scores(encoded), expected, rtol=1e-4)


def _saved_model_cli_here(path, signature, inputs):
    """What `saved_model_cli run` does after parsing its flags, here: load the SavedModel
    into a TF1 session with the C++-backed loader TF Serving uses, feed and print."""
    import contextlib

    from tensorflow.python.tools import saved_model_cli
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        saved_model_cli.run_saved_model_with_feed_dict(path, "serve", signature, inputs,
                                                       None, False)
    return printed.getvalue()


def _fields(data: bytes) -> list:
    """(field number, payload) of a protobuf message's length-delimited fields."""
    def varint(at):
        value = shift = 0
        while True:
            byte = data[at]
            value |= (byte & 0x7F) << shift
            at, shift = at + 1, shift + 7
            if not byte & 0x80:
                return value, at
    fields, at = [], 0
    while at < len(data):
        key, at = varint(at)
        assert key & 7 == 2, "the warm-up records hold length-delimited fields only"
        size, at = varint(at)
        fields.append((key >> 3, data[at:at + size]))
        at += size
    return fields


def _parse_prediction_log(record: bytes) -> tuple:
    """PredictionLog.predict_log(6).request(1) -> (signature_name, {input: ndarray})."""
    from tensorflow.core.framework import tensor_pb2
    [(log_field, predict_log)] = _fields(record)
    [(request_field, request)] = _fields(predict_log)
    assert (log_field, request_field) == (6, 1)
    signature, inputs = None, {}
    for number, payload in _fields(request):
        if number == 1:  # ModelSpec: signature_name is field 3
            signature = dict(_fields(payload))[3].decode()
        elif number == 2:  # map<string, TensorProto> entry: key 1, value 2
            entry = dict(_fields(payload))
            inputs[entry[1].decode()] = tf.make_ndarray(tensor_pb2.TensorProto.FromString(entry[2]))
    return signature, inputs


def test_warmup_records_parse_back_to_requests_that_score(exported):
    path = os.path.join(exported["path"], "assets.extra", signatures.WARMUP_FILE)
    requests = [_parse_prediction_log(r)
                for r in tf.data.TFRecordDataset(path).as_numpy_iterator()]
    # (serving_default, score_encoded) and the mode's (search_images, search_encoded),
    # for batch sizes 1 and 2.
    assert [(name, list(inputs), len(next(iter(inputs.values())))) for name, inputs in requests] \
        == [(name, [key], n) for n in (1, 2) for name, key in (
            ("serving_default", "images"), ("score_encoded", "image_bytes"),
            ("search_images", "images"), ("search_encoded", "image_bytes"))]
    pixels = requests[2][1]["images"]
    assert pixels.dtype == np.uint8 and pixels.shape == (1, 16, 16, 1)
    assert requests[3][1]["image_bytes"][0].startswith(b"\x89PNG")
    name, inputs = _parse_prediction_log(
        warmup.prediction_log("s", {"x": np.arange(6, dtype=np.uint8).reshape(2, 3)}))
    assert name == "s" and inputs["x"].tolist() == [[0, 1, 2], [3, 4, 5]]
    # Each request is one TF Serving can run: the signature takes its inputs.
    loaded = exported["loaded"]
    for name, inputs in requests[4:]:
        scores = loaded.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
        assert scores["anomaly_score"].shape == (2,)


def _score_directly_and_through_the_export(model_dir, saved_model, tmp_path, data,
                                           direct_modes=None, served_modes=None):
    """Scores with the Python search and with the export; returns both CSVs."""
    common = dict(data=data, log_dir=str(tmp_path / "tb"))
    score_job.run(ScoreRequest(model_dir=model_dir, modes=direct_modes,
                                    output_dir=str(tmp_path / "direct"), **common))
    score_job.run(ScoreRequest(saved_model=saved_model, modes=served_modes,
                                    output_dir=str(tmp_path / "served"), **common))
    rows = [list(csv.DictReader(open(tmp_path / d / "scores.csv"))) for d in ("direct", "served")]
    assert len(rows[0]) == len(rows[1])
    for a, b in zip(*rows):
        assert (a["path"], a["label"], a["is_anomaly"]) == (b["path"], b["label"], b["is_anomaly"])
        assert float(a["anomaly_score"]) == pytest.approx(float(b["anomaly_score"]), rel=1e-4)
    return rows


def test_export_main_writes_a_version_that_scores_like_the_model(trained_model_dir, tmp_path):
    """The binary's smoke test; the export then scores as the model directory does."""
    done = run_main("export_main.py", f"--model_dir={trained_model_dir['model_dir']}",
                    f"--export_dir={tmp_path / 'base'}", "--mode=encoder,search")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"exported SavedModel to {tmp_path / 'base' / '1'}" in done.stdout
    assert "serving_default scores with encoder" in done.stdout
    assert signatures.read_settings(str(tmp_path / "base" / "1"))["mode"] == "encoder"
    refused = run_main("export_main.py", f"--model_dir={trained_model_dir['model_dir']}",
                       f"--export_dir={tmp_path / 'base'}", "--restarts=0")
    assert refused.returncode == 1 and "--restarts=0: expected a positive integer" in \
        refused.stderr


@pytest.mark.parametrize("served_mode", [None, "search"])
def test_scores_through_the_export_equal_the_model_dir_s(trained_model_dir, exported_modes,
                                                        tmp_path, served_mode):
    """The default mode (the first exported) or the one asked for, as the model dir scores."""
    mode = served_mode or "encoder_search"
    rows = _score_directly_and_through_the_export(
        trained_model_dir["model_dir"], exported_modes["path"], tmp_path,
        DataConfig(synthetic_counts={"good": 4, "short_fill": 3}), direct_modes=[mode],
        served_modes=[served_mode] if served_mode else None)
    assert len(rows[0]) == 7
    assert json.load(open(tmp_path / "served" / "metrics.json"))["mode"] == mode
    with pytest.raises(RequestError, match="baked-in settings"):
        ScoreRequest(saved_model=exported_modes["path"],
                     overrides=score_job.SearchOverrides(steps=9))
    with pytest.raises(ScoringError, match="score.modes=encoder_search: supports only search"):
        score_job.run(ScoreRequest(saved_model=exported_modes["search_only"],
                                        modes=["encoder_search"],
                                        output_dir=str(tmp_path / "x")))


def test_image_files_score_through_the_export(trained_model_dir, exported_modes, tmp_path):
    """Files go through score_encoded, decoded and resized in the graph."""
    rng = np.random.default_rng(11)
    (tmp_path / "images").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(
            tmp_path / "images" / f"part_{i}.png")
    rows = _score_directly_and_through_the_export(
        trained_model_dir["model_dir"], exported_modes["path"], tmp_path,
        DataConfig(data_dir=str(tmp_path / "images")))
    assert len(rows[0]) == 3 and all(r["label"] == "" for r in rows[1])


# -- one export, every scoring mode ------------------------------------------

def _mode_reference(exported_modes, mode, pixels):
    """The in-process scorer's outputs for `mode`, with its statistics."""
    images = ImageSet.unlabelled(preprocessing.uint8_to_model(pixels))
    return scoring.SearchScorer(exported_modes["model"], exported_modes["configs"][mode],
                                exported_modes["statistics"][mode]).score(images, 8)


@pytest.mark.parametrize("mode, n", [("encoder_search", 1), ("encoder_search", 3),
                                     ("search", 3), ("encoder", 3)])
def test_every_mode_round_trips(exported_modes, mode, n):
    loaded = exported_modes["loaded"]
    assert set(signatures.signature_names(list(MODES))) == set(loaded.signatures)
    pixels = _pixels(n, seed=20 + n)
    reference = _mode_reference(exported_modes, mode, pixels)
    served = loaded.signatures[f"{mode}_images"](images=tf.constant(pixels))
    from_png = loaded.signatures[f"{mode}_encoded"](
        image_bytes=tf.constant([_png(p[..., 0]) for p in pixels]))
    for outputs in (served, from_png):
        np.testing.assert_allclose(outputs["anomaly_score"].numpy(), reference.anomaly_score,
                                   rtol=1e-5)
        np.testing.assert_allclose(outputs["anomaly_map"].numpy(), reference.anomaly_map,
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(outputs["map_score"].numpy(), reference.score("map_max"),
                                   rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(
            outputs["is_anomaly"].numpy(),
            reference.score("map_max") > exported_modes["thresholds"][mode])
    if mode == "encoder_search":  # the default mode is also serving_default
        default = loaded.signatures["serving_default"](images=tf.constant(pixels))
        np.testing.assert_array_equal(default["anomaly_score"].numpy(),
                                      served["anomaly_score"].numpy())


def test_modes_give_different_scores_and_settings_describe_them(exported_modes):
    loaded = exported_modes["loaded"]
    pixels = _pixels(2, seed=30)
    scores = {m: loaded.signatures[f"{m}_images"](images=tf.constant(pixels))[
        "anomaly_score"].numpy() for m in MODES}
    assert not np.allclose(scores["encoder"], scores["search"])
    assert np.all(scores["encoder_search"] <= scores["encoder"] * (1 + 1e-6))
    settings = signatures.read_settings(exported_modes["path"])
    assert settings["mode"] == "encoder_search" and settings["search"]["steps"] == 5
    assert {m: v["search"]["steps"] for m, v in settings["modes"].items()} == {
        "encoder_search": 5, "search": 5, "encoder": 0}
    assert {m: v["image_score"] for m, v in settings["modes"].items()} == dict.fromkeys(
        MODES, "map_max")
    assert settings["modes"]["encoder"]["threshold"] == exported_modes["thresholds"]["encoder"]
    meta = loaded.signatures["metadata"]()
    assert meta["mode"].numpy() == b"encoder_search"
    assert [m.decode() for m in meta["modes"].numpy()] == list(MODES)


def test_fresh_process_without_ic_anogan_and_saved_model_cli(exported, exported_modes,
                                                             tmp_path):
    """One process that cannot import this package scores both exports, then runs the
    `saved_model_cli run` command on serving_default (one process: TF's start-up is the
    cost); the encoder mode also through the command's loader, here."""
    pixels = _pixels(2, seed=31)
    np.save(tmp_path / "in.npy", pixels)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["ic_anogan"] = None  # importing the package must not be needed
        import json, numpy as np, tensorflow as tf
        pixels = tf.constant(np.load({str(tmp_path / 'in.npy')!r}))
        default = tf.saved_model.load({exported['path']!r}).signatures["serving_default"]
        encoder = tf.saved_model.load({exported_modes['path']!r}).signatures["encoder_images"]
        print("RESULT", json.dumps([default(images=pixels)["anomaly_score"].numpy().tolist(),
                                    encoder(images=pixels)["anomaly_score"].numpy().tolist()]),
              flush=True)
        from tensorflow.python.tools import saved_model_cli
        sys.argv = ["saved_model_cli", "run", "--dir", {exported['path']!r}, "--tag_set",
                    "serve", "--signature_def", "serving_default", "--inputs",
                    "images=" + {str(tmp_path / 'in.npy')!r}]
        saved_model_cli.main()
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(env, TF_CPP_MIN_LOG_LEVEL="2"), cwd="/", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    default, encoder = json.loads(done.stdout.split("RESULT ")[1].splitlines()[0])
    expected_default = _in_process(exported["model"], pixels)["anomaly_score"]
    np.testing.assert_allclose(default, expected_default, rtol=1e-5)
    np.testing.assert_allclose(_parse_cli_scores(done.stdout), expected_default, rtol=1e-4)
    expected = _mode_reference(exported_modes, "encoder", pixels).anomaly_score
    np.testing.assert_allclose(encoder, expected, rtol=1e-5)
    ran = _saved_model_cli_here(exported_modes["path"], "encoder_images", {"images": pixels})
    np.testing.assert_allclose(_parse_cli_scores(ran), expected, rtol=1e-4)


def test_export_refuses_modes_it_cannot_serve(exported_modes, trained_model_dir, tmp_path):
    import dataclasses
    model = exported_modes["model"]
    without_encoder = dataclasses.replace(model, encoder=None)
    with pytest.raises(signatures.ExportError, match="cannot export mode.* encoder.*no encoder"):
        export.export_saved_model(without_encoder, str(tmp_path / "a"),
                                  search_config_for_mode("encoder"), None)
    with pytest.raises(signatures.ExportError, match="each mode can be exported once"):
        export.export_saved_model(model, str(tmp_path / "b"), SEARCH, None,
                                  more_modes=[(SEARCH, None)])
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")
