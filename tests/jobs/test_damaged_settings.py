"""No silent wrong answers from a damaged calibration.json, map flags or TF_CONFIG.

Each case: the exception or exit code, a message naming the file, field,
flag or variable and what was expected, no traceback, and a calibration.json
left as it was when the refusal concerns it.
"""

import json
import logging
import os
import shutil

import numpy as np
import pytest
from conftest import run_main, write_image

from ic_anogan.config import ConfigError, DataConfig
from ic_anogan.data import loading as data
from ic_anogan.data.image_set import DataError
from ic_anogan.jobs import score_job
from ic_anogan.jobs.score_request import MapOverrides, Recalibration, ScoreRequest
from ic_anogan.scoring import calibration
from ic_anogan.scoring.calibration import CalibrationError
from ic_anogan.training import cluster


@pytest.fixture()
def model_copy(trained_model_dir, tmp_path):
    model_dir = str(tmp_path / "model")
    shutil.copytree(trained_model_dir["model_dir"], model_dir)
    return model_dir


def _path(model_dir):
    return os.path.join(model_dir, calibration.CALIBRATION_FILE)


def _damage(model_dir, change):
    """Applies change(stored JSON) to calibration.json; returns the damaged text."""
    stored = json.load(open(_path(model_dir)))
    change(stored)
    text = json.dumps(stored)  # NaN is written as NaN, as a damaged file may hold
    with open(_path(model_dir), "w") as f:
        f.write(text)
    return text


def _set_threshold(value, mode="encoder_search", score="map_max"):
    def change(stored):
        stored["modes"][mode]["image_scores"][score]["threshold"] = value
    return change


DAMAGE = [
    # (what, change, message naming the field and what was expected)
    ("NaN map_max threshold", _set_threshold(float("nan")),
     r"modes\.encoder_search\.image_scores\.map_max\.threshold is nan; expected a finite number"),
    ("null map_max threshold", _set_threshold(None),
     r"modes\.encoder_search\.image_scores\.map_max\.threshold is None; expected a finite"),
    ("infinite study threshold",
     lambda s: s["modes"]["search"].__setitem__("threshold", float("inf")),
     r"modes\.search\.threshold is inf; expected a finite number"),
    ("NaN pixel threshold",
     lambda s: s["modes"]["encoder"]["map"].__setitem__("pixel_threshold", float("nan")),
     r"modes\.encoder\.map is unusable: 'pixel_threshold' is nan; expected a finite number"),
    ("statistics of another image size",
     lambda s: s["modes"]["encoder"]["map"].update(mean=np.zeros((8, 8)).tolist(),
                                                   std=np.ones((8, 8)).tolist()),
     r"modes\.encoder\.map is unusable: 'mean' and 'std' are 8x8; the model scores 16x16"),
    ("negative deviation",
     lambda s: s["modes"]["search"]["map"]["std"][0].__setitem__(0, -1.0),
     r"modes\.search\.map is unusable: 'std' must be finite and positive"),
    ("mode stored under another name",
     lambda s: s["modes"]["search"]["search"].__setitem__("mode", "encoder_search"),
     r"modes\.search\.search\.mode is 'encoder_search'; expected 'search'"),
    ("unknown mode", lambda s: s["modes"].__setitem__("serch", s["modes"]["search"]),
     r"unknown mode 'serch'"),
]


@pytest.mark.parametrize("what, change, message", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_calibration_is_refused_by_field_when_read(model_copy, what, change, message):
    damaged = _damage(model_copy, change)
    with pytest.raises(CalibrationError, match=message) as refused:
        calibration.read_all(model_copy, image_size=16)
    assert str(refused.value).startswith(_path(model_copy))
    assert "; recalibrate " in str(refused.value)  # says what repairs it, and the command
    assert refused.value.remedy["recalibration.good"] == "<good images>"  # says it as flags
    assert open(_path(model_copy)).read() == damaged  # left as it was


def test_a_nan_threshold_stops_export_and_scoring_before_any_work(model_copy, tmp_path):
    """The silent failure this guards against: an export that passes every part."""
    damaged = _damage(model_copy, _set_threshold(float("nan")))
    for request in (ScoreRequest(model_dir=model_copy, modes=["all"],
                                 export_dir=str(tmp_path / "serving")),
                    ScoreRequest(model_dir=model_copy, output_dir=str(tmp_path / "out"),
                                 log_dir=str(tmp_path / "tb"))):
        with pytest.raises(CalibrationError, match=DAMAGE[0][2]):
            score_job.run(request)
    assert open(_path(model_copy)).read() == damaged
    assert not os.path.exists(tmp_path / "serving") and not os.path.exists(tmp_path / "out")


def _recalibrate(model_dir, tmp_path, **recalibration):
    """score_job.run recalibrating the search mode on tmp_path/good, then scoring."""
    return score_job.run(ScoreRequest(
        model_dir=model_dir, modes=["search"], output_dir=str(tmp_path / "out"),
        log_dir=str(tmp_path / "tb"), data=DataConfig(synthetic_counts={"good": 2, "void": 2}),
        recalibration=Recalibration(DataConfig(data_dir=str(tmp_path / "good")),
                                    **recalibration)))


def _good_folder(folder, rng, count, size=16):
    for i in range(count):
        write_image(str(folder / f"{i}.png"), rng.integers(0, 256, (size, size), dtype=np.uint8))


def test_recalibration_repairs_damaged_statistics(model_copy, tmp_path, rng, caplog):
    _damage(model_copy, lambda s: s["modes"]["search"]["map"].__setitem__(
        "pixel_threshold", float("nan")))
    _good_folder(tmp_path / "good", rng, 10)
    caplog.set_level(logging.WARNING)
    _recalibrate(model_copy, tmp_path)
    assert "replacing the damaged calibration of mode search" in caplog.text
    repaired = calibration.read_all(model_copy, 16)  # every record checks out again
    assert repaired["search"]["map"]["count"] == 10
    assert np.isfinite(repaired["search"]["map"]["pixel_threshold"])


def test_recalibrating_one_mode_refuses_another_damaged_one_before_the_search(
        model_copy, tmp_path, rng, caplog):
    damaged = _damage(model_copy, _set_threshold(float("nan"), mode="encoder"))
    _good_folder(tmp_path / "good", rng, 10)
    caplog.set_level(logging.INFO)
    with pytest.raises(CalibrationError, match=r"modes\.encoder\.image_scores\.map_max\."
                       r"threshold is nan; expected a finite number; mode encoder is not being "
                       r"recalibrated .* recalibrate it too") as refused:
        _recalibrate(model_copy, tmp_path)
    assert "recalibrating" not in caplog.text  # refused before the images or the search
    assert "replacing" not in caplog.text  # the encoder mode is not being replaced
    assert open(_path(model_copy)).read() == damaged
    # The hint of a refusal when read names the mode to recalibrate.
    assert refused.value.remedy == {"recalibration.good": "<good images>",
                                    "score.modes": "search,encoder"}
    with pytest.raises(CalibrationError, match="recalibrate mode encoder") as refused:
        calibration.read_all(model_copy, 16)
    assert refused.value.remedy["score.modes"] == "encoder"


def test_reference_latents_of_another_width_are_refused_when_read(model_copy, tmp_path, rng):
    import base64
    _good_folder(tmp_path / "good", rng, 10)
    _recalibrate(model_copy, tmp_path)  # 10 images: neighbour statistics with references

    def narrow(stored):
        references = stored["modes"]["search"]["map"]["references"]["latents"]
        latents = np.frombuffer(base64.b64decode(references["float32_base64"]), "<f4")
        latents = latents.reshape(references["shape"])[:, :3].copy()
        references.update(shape=list(latents.shape),
                          float32_base64=base64.b64encode(latents.tobytes()).decode())
    damaged = _damage(model_copy, narrow)
    message = (r"modes\.search\.map is unusable: 'references' hold latents of 3 numbers; the "
               r"model's z has 8")
    for request in (ScoreRequest(model_dir=model_copy, modes=["search"],
                                 export_dir=str(tmp_path / "serving")),
                    ScoreRequest(model_dir=model_copy, modes=["search"],
                                 output_dir=str(tmp_path / "out2"), log_dir=str(tmp_path / "tb"))):
        with pytest.raises(CalibrationError, match=message):
            score_job.run(request)
    assert open(_path(model_copy)).read() == damaged
    assert not os.path.exists(tmp_path / "serving") and not os.path.exists(tmp_path / "out2")


def test_calibrate_dir_with_a_labelled_root_uses_only_good(model_copy, tmp_path, rng, caplog):
    root = tmp_path / "test_root"
    _good_folder(root / "good", rng, 10)
    _good_folder(root / "void", rng, 3)
    caplog.set_level(logging.INFO)
    images, used = data.load_calibration_set(DataConfig(data_dir=str(root)), 16)
    assert len(images) == 10 and set(images.labels) == {0}
    assert all(i.startswith(str(root / "good")) for i in images.ids)
    assert "the folders void were left out" in used


@pytest.mark.parametrize("count", [1, 2, 9])
def test_calibrate_dir_with_too_few_images_is_refused_before_the_search(
        model_copy, tmp_path, rng, count):
    _good_folder(tmp_path / "good", rng, count)
    before = open(_path(model_copy)).read()
    with pytest.raises(DataError, match=f"the {count} images of .*good; calibration needs at "
                       "least 10 good images"):
        _recalibrate(model_copy, tmp_path)
    assert open(_path(model_copy)).read() == before


def test_calibrate_dir_with_an_mvtec_root_is_refused(tmp_path, rng):
    _good_folder(tmp_path / "mvtec" / "train" / "good", rng, 12)
    with pytest.raises(DataError, match="MVTec-style root, whose train/good/ the model trained"):
        data.load_calibration_set(DataConfig(data_dir=str(tmp_path / "mvtec")), 16)


def test_map_kernel_wider_than_the_image_is_refused_before_the_search(model_copy, tmp_path, rng):
    _good_folder(tmp_path / "good", rng, 10)
    before = open(_path(model_copy)).read()
    with pytest.raises(ConfigError, match=r"map.kernel_size=101: expected an odd integer no "
                       "larger than the image size 16"):
        _recalibrate(model_copy, tmp_path, map_overrides=MapOverrides(kernel_size=101))
    assert open(_path(model_copy)).read() == before


def test_a_mode_without_calibration_warns_only_that(model_copy, tmp_path, caplog):
    _damage(model_copy, lambda s: s["modes"].pop("encoder"))
    caplog.set_level(logging.WARNING)
    score_job.run(ScoreRequest(model_dir=model_copy, modes=["encoder"],
                                    output_dir=str(tmp_path / "out"),
                                    log_dir=str(tmp_path / "tb"),
                                    data=DataConfig(synthetic_counts={"good": 2, "void": 2})))
    assert "has no calibration for mode encoder" in caplog.text
    assert "calibrated before the map scores" not in caplog.text


# -- TF_CONFIG --------------------------------------------------------------------

WORKERS = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}


@pytest.mark.parametrize("value, message", [
    ("{cluster: 1}", r"TF_CONFIG='\{cluster: 1\}': not valid JSON \(Expecting property name"),
    ("[]", r"TF_CONFIG='\[\]': expected a JSON object with \"cluster\""),
    (json.dumps({"cluster": WORKERS, "task": {"type": "worker", "index": 5}}),
     r"task\.index is 5; the cluster has 2 worker task\(s\), so expected 0 to 1"),
    (json.dumps({"cluster": WORKERS, "task": {"type": "wroker", "index": 0}}),
     r"task\.type is 'wroker'; expected one of the cluster's task types: worker"),
    (json.dumps({"cluster": {"wroker": ["127.0.0.1:1"]}, "task": {"type": "wroker", "index": 0}}),
     r"cluster names the task type 'wroker'"),
    (json.dumps({"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}),
     r"cluster\.worker must be a non-empty list of 'host:port' strings"),
    (json.dumps({"cluster": WORKERS}), r"expected \"task\": \{\"type\": \"worker\""),
])
def test_bad_tf_config_is_named_with_its_value(value, message):
    for strategy in ("multi_worker", "auto"):
        with pytest.raises(cluster.ClusterConfigError, match=message):
            cluster.check(strategy, {"TF_CONFIG": value})


def test_tf_config_is_read_only_by_the_strategies_that_use_it():
    stray = {"TF_CONFIG": "not json"}
    assert cluster.check("default", stray) is None and cluster.check("mirrored", stray) is None
    assert cluster.check("auto", {}) is None
    with pytest.raises(cluster.ClusterConfigError, match="distribution.strategy=multi_worker: "
                       "TF_CONFIG is not set, so this process would train alone"):
        cluster.check("multi_worker", {})
    good = json.dumps({"cluster": WORKERS, "task": {"type": "worker", "index": 1}})
    assert cluster.describe_task(cluster.check("auto", {"TF_CONFIG": good})) == "worker 1 of 2"


def test_binaries_name_bad_settings_before_tensorflow_loads(tmp_path, trained_model_dir):
    """Cheap refusals, each before TensorFlow or the model loads: flag values first, then
    places, then TF_CONFIG."""
    model_dir = trained_model_dir["model_dir"]
    tiny = ["--image_size=16", "--latent_dim=8", "--base_filters=4", "--epochs=1",
            "--synthetic_train_count=20", f"--model_dir={tmp_path / 'm'}",
            f"--log_dir={tmp_path / 'tb'}"]
    cases = [
        (("score_main.py", "--mode=bogus", f"--model_dir={tmp_path / 'missing'}"), {},
         "--mode=bogus: expected a list of search, encoder, encoder_search or all"),
        (("score_main.py", f"--model_dir={tmp_path / 'missing'}"), {},
         f"--model_dir={tmp_path / 'missing'}: not found"),
        (("score_main.py", f"--model_dir={model_dir}", f"--data_dir={tmp_path / 'nope'}"), {},
         f"--data_dir={tmp_path / 'nope'}: folder not found"),
        (("score_main.py", f"--model_dir={model_dir}", f"--calibrate_dir={tmp_path / 'nope'}"),
         {}, f"--calibrate_dir={tmp_path / 'nope'}: folder not found"),
        (("export_main.py", f"--model_dir={model_dir}", f"--export_dir={tmp_path / 'm'}",
          "--threshold=nan"), {}, "--threshold=nan: expected a finite number"),
        (("train_main.py", *tiny, "--map_kernel_size=101"), {},
         "--map_kernel_size=101: expected an odd integer no larger than the image size 16"),
        (("train_main.py", *tiny, "--strategy=multi_worker"), {},
         "--strategy=multi_worker: TF_CONFIG is not set"),
        (("train_main.py", *tiny), {"TF_CONFIG": "{not json"},
         "TF_CONFIG='{not json': not valid JSON"),
    ]
    for args, env, message in cases:
        done = run_main(*args, unset=["TF_CONFIG"], extra_env=env)
        assert done.returncode != 0, (args, done.stdout)
        assert message in done.stderr, (args, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
        # The binaries log the oneDNN state right after TensorFlow loads: never reached.
        assert "oneDNN" not in done.stderr, (args, done.stderr[-2000:])
        assert not os.path.exists(tmp_path / "m")
