"""Bad input is refused by name, before any work; nothing is left half-written.

Each case checks the exit code or exception, a message naming the file or
flag and what was expected, and that nothing was left behind.
"""

import gzip
import io
import json
import os
import shutil
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_main, write_image
from PIL import Image

from ic_anogan.config import DataConfig
from ic_anogan.core import atomic_io
from ic_anogan.data import idx_files, image_files, image_set, preprocessing
from ic_anogan.models import model_dir as model_dir_lib
from ic_anogan.reporting import report as report_lib
from ic_anogan.scoring import scorer as scoring
from ic_anogan.scoring.outputs import ScoreOutputs
from ic_anogan.serving import client as serving
from ic_anogan.serving.signatures import ExportError
from ic_anogan.training import gan

TINY_TRAIN = ["--image_size=16", "--latent_dim=8", "--base_filters=4", "--batch_size=8",
              "--epochs=1", "--synthetic_train_count=20", "--noencoder",
              "--monitor_every_epochs=0", "--search_steps=2"]


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height: what a decompression bomb looks like
    before decoding, without writing gigabytes."""
    def chunk(kind, payload):
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


# -- images and IDX -------------------------------------------------------------

def test_decompression_bomb_is_refused_by_name_or_skipped(tmp_path, rng):
    folder = tmp_path / "images"
    write_image(str(folder / "ok.png"), rng.integers(0, 256, (16, 16), dtype=np.uint8))
    bomb = _png_header_only(str(folder / "bomb.png"), 15000, 15000)
    with pytest.raises(image_set.DataError, match="bomb.png: .*above the limit of 100000000 pixels "
                       "\\(data.max_image_pixels\\)"):
        image_files.load_folder(str(folder), 16)
    # Under Pillow's own bomb limit, ours is what refuses.
    with pytest.raises(image_set.DataError, match="bomb.png: 15000x15000 = 225000000 pixels, above "
                       "the limit of 200000000 pixels"):
        image_files.read_gray(bomb, max_pixels=200_000_000)
    kept = image_files.load_folder(str(folder), 16, skip_corrupt=True)
    assert kept.ids == [str(folder / "ok.png")] and kept.skipped[0][0] == bomb
    # A lower limit refuses ordinary images too, by the same rule.
    with pytest.raises(image_set.DataError,
                       match="ok.png: 16x16 = 256 pixels, above the limit of 100 "):
        image_files.read_gray(str(folder / "ok.png"), max_pixels=100)


def test_large_jpeg_is_decoded_at_reduced_scale_with_the_same_result(tmp_path):
    y, x = np.mgrid[0:1024, 0:1024]
    pixels = ((np.sin(x / 90.0) + np.cos(y / 70.0)) * 60 + 128).astype(np.uint8)
    path = str(tmp_path / "big.jpg")
    Image.fromarray(pixels).save(path, quality=95)
    drafted = image_files.load_image_files([path], 16)[0][0]
    full = preprocessing.resize_to_model(image_files.read_gray(path)[..., None], 16).numpy()
    # Decoded at 1/8 scale (128 px), then resized: the model input hardly differs.
    assert np.abs(drafted - full).max() < 0.03
    sizes = image_files.load_image_files([path], 16, with_sizes=True)[3]
    assert sizes == [(1024, 1024)]  # the original size, for the mask check


def test_idx_cut_in_its_header_or_with_a_corrupt_gzip_stream_is_named(tmp_path):
    cut = tmp_path / "cut-idx3-ubyte"
    cut.write_bytes(struct.pack(">I", 0x00000803) + b"\x00\x00")
    with pytest.raises(image_set.DataError, match="cut-idx3-ubyte: cut off inside its header"):
        idx_files.read_idx(str(cut), 0x00000803)
    broken = tmp_path / "broken-idx3-ubyte.gz"
    good = gzip.compress(struct.pack(">IIII", 0x00000803, 1, 2, 2) + bytes(4))
    broken.write_bytes(good[:12] + b"\xff" * 20 + good[32:])
    with pytest.raises(image_set.DataError, match="broken-idx3-ubyte.gz: cannot read .*expected an "
                       "IDX file"):
        idx_files.read_idx(str(broken), 0x00000803)


# -- model directories ------------------------------------------------------------

@pytest.fixture()
def model_copy(trained_model_dir, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(trained_model_dir["model_dir"], path)
    return path


def test_truncated_weights_are_named_with_what_to_do(model_copy):
    weights = model_copy / model_dir_lib.GENERATOR_FILE
    weights.write_bytes(weights.read_bytes()[:500])
    with pytest.raises(model_dir_lib.ModelDirError, match="generator.weights.h5: cannot be loaded .*"
                       "Train again into the same model directory with the same settings"):
        model_dir_lib.load_trained_model(str(model_copy))


@pytest.mark.parametrize("content, message", [
    ("[]", "expected a JSON object with a 'model' section"),
    ('{"train": {}}', "expected a JSON object with a 'model' section"),
    ('{"model": {"image_size": 48}}', "the 'model' section is unusable"),
    ("{not json", "not valid JSON"),
])
def test_broken_config_json_is_named(model_copy, content, message):
    (model_copy / model_dir_lib.CONFIG_FILE).write_text(content)
    with pytest.raises(model_dir_lib.ModelDirError, match=message) as raised:
        model_dir_lib.load_trained_model(str(model_copy))
    assert "config.json" in str(raised.value)


# -- output places ------------------------------------------------------------------

def test_unwritable_places_are_explained():
    assert atomic_io.unwritable_reason("/proc/ic_anogan/model").startswith("cannot write in /proc")
    assert atomic_io.unwritable_reason("/etc/hostname") == "exists and is a file; expected a folder"
    assert "is a file, so no folder" in atomic_io.unwritable_reason("/etc/hostname/sub")


def test_train_main_refuses_bad_flags_and_places_before_any_work(tmp_path):
    (tmp_path / "a_file").write_text("x")
    cases = [
        (["--beta_1=1.5"], "--beta_1=1.5: expected a number in [0, 1)"),
        (["--learning_rate=inf"], "--learning_rate=inf: expected a finite positive number"),
        (["--learning_rate=nan"], "--learning_rate=nan: expected a finite positive number"),
        (["--encoder_learning_rate=inf"], "--encoder_learning_rate=inf: expected a finite "
                                          "positive number"),
        (["--map_kernel_size=4"], "--map_kernel_size=4: expected an odd integer >= 1"),
        (["--max_image_pixels=0"], "--max_image_pixels=0: expected a positive integer"),
        (["--ema_decay=1"], "--ema_decay=1.0: expected a number in [0, 1)"),
        (["--search_learning_rate=0"], "--search_learning_rate=0.0: expected a finite positive "
                                       "number"),
        (["--calibration_percentile=0"], "--calibration_percentile=0.0: expected a number in "
                                         "(0, 100]"),
        (["--updates=100"], "both set the training length; give one"),
        ([f"--model_dir={tmp_path / 'a_file'}"],
         f"--model_dir={tmp_path / 'a_file'}: exists and is a file; expected a folder"),
        (["--model_dir=/proc/ic_anogan_model"], "--model_dir=/proc/ic_anogan_model: cannot "
                                                "write in /proc"),
    ]
    for args, message in cases:
        args = args if any(a.startswith("--model_dir") for a in args) else [
            f"--model_dir={tmp_path / 'm'}", *args]
        done = run_main("train_main.py", f"--log_dir={tmp_path / 'logs'}", *TINY_TRAIN, *args)
        assert done.returncode != 0 and message in done.stderr, (args, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert not os.path.exists(tmp_path / "m") and not os.path.exists(tmp_path / "logs")
    # A refusal after the flags (no data) leaves no model dir behind either.
    missing = run_main("train_main.py", f"--model_dir={tmp_path / 'm'}", *TINY_TRAIN,
                       f"--log_dir={tmp_path / 'logs'}", f"--data_dir={tmp_path / 'none'}")
    assert missing.returncode == 1 and "none: folder not found" in missing.stderr
    assert not os.path.exists(tmp_path / "m")


def test_a_run_stopped_before_its_first_checkpoint_leaves_no_model_dir(tmp_path):
    from ic_anogan.config import ModelConfig, TrainConfig

    class Stop(Exception):
        pass

    def stopper(**_):
        import keras

        class StopAtFirstBatch(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                raise Stop()
        return StopAtFirstBatch()

    with pytest.raises(Stop):
        gan.train(model_dir=str(tmp_path / "m"), log_dir=str(tmp_path / "logs"),
                    model_config=ModelConfig(16, 8, 4),
                    train_config=TrainConfig(batch_size=8, epochs=1, monitor_every_epochs=0),
                    data_config=DataConfig(synthetic_train_count=20), verbose=0,
                    extra_callbacks=[stopper])
    assert not os.path.exists(tmp_path / "m")


def test_scoring_refuses_output_places_before_the_search(trained_model_dir, tmp_path,
                                                        caplog):
    from ic_anogan.jobs import score_job
    from ic_anogan.jobs.score_request import RequestError, ScoreRequest
    (tmp_path / "a_file").write_text("x")
    model_dir = trained_model_dir["model_dir"]
    caplog.set_level("INFO")
    for flag, folder, message in (
            ("output_dir", tmp_path / "a_file", "exists and is a file; expected a folder"),
            ("output_dir", "/proc/ic_anogan_out", "cannot write in /proc"),
            ("log_dir", tmp_path / "a_file", "exists and is a file"),
            ("export_dir", tmp_path / "a_file", "exists and is a file")):
        request = ScoreRequest(model_dir=model_dir, data=DataConfig(synthetic_counts={"good": 2}),
                               **{flag: str(folder)})
        with pytest.raises(RequestError, match=f"score.{flag}={folder}: {message}"):
            score_job.run(request)
        assert "scoring" not in caplog.text  # refused before any image was searched


# -- exports --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_export(exported_modes):
    """The every-mode export; its default mode, encoder_search, decides by map_max."""
    return {"model": exported_modes["model"], "path": exported_modes["path"],
            "base": os.path.dirname(exported_modes["path"]),
            "config": exported_modes["configs"]["encoder_search"],
            "loaded": exported_modes["loaded"]}


def test_saved_model_paths_are_explained(small_export, tmp_path):
    with pytest.raises(ExportError, match="an export base, not a version folder; give "
                       f"{small_export['path']} "):
        serving.ExportedModel(small_export["base"])
    (tmp_path / "3").mkdir()
    with pytest.raises(ExportError, match="no saved_model.pb; expected a version folder"):
        serving.ExportedModel(str(tmp_path / "3"))
    from ic_anogan.jobs import score_job
    from ic_anogan.jobs.score_request import ScoreRequest
    with pytest.raises(ExportError, match="an export base, not a version folder"):
        score_job.run(ScoreRequest(saved_model=small_export["base"]))


def test_empty_batch_gives_empty_outputs(small_export):
    signatures = small_export["loaded"].signatures
    empty = signatures["serving_default"](images=tf.zeros([0, 16, 16, 1], tf.uint8))
    assert empty["anomaly_score"].shape == (0,) and empty["defect_mask"].shape == (0, 16, 16, 1)
    assert signatures["score_encoded"](image_bytes=tf.constant([], tf.string))[
        "is_anomaly"].shape == (0,)


def test_encoded_inputs_are_checked_with_the_element_named(small_export):
    signature = small_export["loaded"].signatures["score_encoded"]
    png = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(png, format="PNG")
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="image_bytes: expected a string tensor \\[N\\]"):
        signature(image_bytes=tf.constant([[png.getvalue()]]))
    tiff = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tiff, format="TIFF")
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="image_bytes\\[1\\]: not a PNG, JPEG, BMP or GIF file"):
        signature(image_bytes=tf.constant([png.getvalue(), tiff.getvalue()]))


def test_nan_pixels_are_never_judged_good(small_export):
    images = np.zeros((2, 16, 16, 1), np.float32)
    images[1, 3, 3, 0] = np.nan
    out = small_export["loaded"].signatures["score_float"](images=tf.constant(images))
    assert not np.isfinite(out["map_score"].numpy()[1])
    assert bool(out["is_anomaly"].numpy()[1]) is True


def test_tiff_files_score_through_the_export_as_decoded_pixels(small_export, tmp_path, rng):
    folder = tmp_path / "tiffs"
    for i in range(3):
        write_image(str(folder / f"{i}.tif"), rng.integers(0, 256, (20, 24), dtype=np.uint8))
    images = image_files.load_folder(str(folder), 16)
    served = serving.ExportedModel(small_export["path"]).scorer().score(images, batch_size=2)
    direct = scoring.SearchScorer(small_export["model"], small_export["config"]).score(images, 2)
    np.testing.assert_allclose(served.anomaly_score, direct.anomaly_score, rtol=1e-4)


def test_concurrent_exports_end_as_two_versions(tmp_path):
    base = str(tmp_path / "serving")
    with atomic_io.new_numbered_directory(base, 1) as first:
        with atomic_io.new_numbered_directory(base, 1) as second:  # both saw "1" as next
            open(os.path.join(second["temp"], "saved_model.pb"), "w").close()
        open(os.path.join(first["temp"], "saved_model.pb"), "w").close()
    assert second["path"].endswith("/1") and first["path"].endswith("/2")
    assert sorted(os.listdir(base)) == ["1", "2"]  # no temporary folder left
    with pytest.raises(RuntimeError):
        with atomic_io.new_numbered_directory(base, 3):
            raise RuntimeError("export failed")
    assert sorted(os.listdir(base)) == ["1", "2"]


def test_report_judges_non_finite_scores_anomalous(tmp_path):
    images = image_set.ImageSet(np.zeros((3, 16, 16, 1), np.float32), ["a", "b", "c"],
                                np.array([0, 1, 1]), ["good", "void", "void"])
    outputs = ScoreOutputs(anomaly_score=np.array([1.0, np.nan, 5.0]),
                           residual_score=np.zeros(3), discrimination_score=np.zeros(3),
                           reconstruction=np.zeros((3, 16, 16, 1), np.float32),
                           anomaly_map=np.zeros((3, 16, 16, 1), np.float32))
    report = report_lib.write_report(str(tmp_path / "o"), images, outputs, threshold=2.0)
    rows = (tmp_path / "o" / "scores.csv").read_text().splitlines()[1:]
    assert [r.split(",")[6] for r in rows] == ["0", "1", "1"]
    assert report.evaluation["auroc"] == 1.0  # NaN ranks as the most anomalous
    # The metrics count it as the CSV does: found anomalous.
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["at_threshold"][
        "true_positives"] == 2


def test_the_readme_names_only_the_old_flags_each_command_has(tmp_path):
    """export_main.py scores no images and has no batch size; the README must not say it
    takes --batch_size, and the command refuses it by name, before TensorFlow loads."""
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "README.md")).read()
    sentence = next(line for line in readme.splitlines() if "the old names" in line)
    claims = sentence.split("the old names", 1)[1].split(".")[0]
    for_export = claims.split("export_main.py")[0]
    assert "--batch_size" not in for_export, claims
    done = run_main("export_main.py", f"--model_dir={tmp_path}", f"--export_dir={tmp_path}/e",
                    "--batch_size=8")
    assert done.returncode == 1 and "Unknown command line flag 'batch_size'" in done.stderr
    assert "Traceback" not in done.stderr and "oneDNN" not in done.stderr
