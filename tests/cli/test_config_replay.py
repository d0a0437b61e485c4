"""--config=<model_dir>/config.json replays a training run: the same settings, the same
weights; flags given beside it override single fields."""

import json

from conftest import run_main

TINY_RUN = ["--image_size=16", "--latent_dim=8", "--base_filters=4", "--batch_size=8",
            "--epochs=1", "--synthetic_train_count=40", "--noencoder", "--nocalibrate",
            "--monitor_every_epochs=0"]


def _run_section(model_dir):
    return json.load(open(f"{model_dir}/config.json"))["run"]


def test_a_replayed_run_trains_byte_identical_weights_and_flags_override_one_field(tmp_path):
    first, replay, changed = (str(tmp_path / name) for name in ("first", "replay", "changed"))
    done = run_main("train_main.py", f"--model_dir={first}", f"--log_dir={tmp_path}/l1",
                    *TINY_RUN)
    assert done.returncode == 0, done.stderr[-2000:]
    done = run_main("train_main.py", f"--model_dir={replay}", f"--log_dir={tmp_path}/l2",
                    f"--config={first}/config.json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert _run_section(replay) == _run_section(first)
    for name in ("generator.weights.h5", "discriminator.weights.h5"):
        assert open(f"{first}/{name}", "rb").read() == open(f"{replay}/{name}", "rb").read()
    # A flag beside the file changes its field only; --seed seeds the GAN and the encoder.
    done = run_main("train_main.py", f"--model_dir={changed}", f"--log_dir={tmp_path}/l3",
                    f"--config={first}/config.json", "--seed=3", "--map_kernel_size=5",
                    "--calibrate", "--calibration_percentile=98")
    assert done.returncode == 0, done.stderr[-2000:]
    expected = _run_section(first)
    expected["train"]["seed"] = 3
    expected["encoder"] = None  # the file's: no encoder
    changed_run = _run_section(changed)
    assert changed_run["calibration"]["map"]["kernel_size"] == 5
    assert changed_run["calibration"]["percentile"] == 98
    changed_run["calibration"] = None
    assert changed_run == expected


def test_a_bad_config_is_refused_by_name(tmp_path):
    (tmp_path / "other.json").write_text('{"model": {}}')
    for value, message in (
            (str(tmp_path / "none.json"), f"--config={tmp_path / 'none.json'}: cannot read it"),
            (str(tmp_path / "other.json"), "expected a model directory's config.json")):
        done = run_main("train_main.py", f"--model_dir={tmp_path}/m", f"--config={value}")
        assert done.returncode == 1 and message in done.stderr, done.stderr[-1500:]


# RunConfig fields no train flag sets: fixed by the library, or set by another command.
WITHOUT_A_FLAG = {"train.monitor_images", "data.synthetic_counts", "data.synthetic_split",
                  "search.beta_1", "search.beta_2", "search.epsilon", "search.mode",
                  "encoder.beta_1", "encoder.keep_best", "calibration.map.folds",
                  "calibration.map.top_fraction", "calibration.map.prior_images",
                  "calibration.map.std_floor"}


def test_every_flag_names_a_field_and_every_field_has_a_flag():
    import subprocess
    import sys
    listed = subprocess.run([sys.executable, "-c", (
        "import dataclasses, json\n"
        "from ic_anogan.cli import train\n"
        "from ic_anogan import config\n"
        "def leaves(cls, prefix):\n"
        "    for f in dataclasses.fields(cls):\n"
        "        t = f.default if f.default is not dataclasses.MISSING else None\n"
        "        if dataclasses.is_dataclass(t):\n"
        "            yield from leaves(type(t), prefix + f.name + '.')\n"
        "        else:\n"
        "            yield prefix + f.name\n"
        "print(json.dumps({'paths': [p for r in train.ROWS if r.is_setting\n"
        "                            for p in (r.path,) + r.also],\n"
        "                  'fields': sorted(leaves(config.RunConfig, ''))}))")],
        capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-1500:]
    found = __import__("json").loads(listed.stdout)
    mapped = set(found["paths"])
    assert mapped <= set(found["fields"]), mapped - set(found["fields"])
    assert set(found["fields"]) - mapped == WITHOUT_A_FLAG, set(found["fields"]) - mapped


def test_a_scoring_run_replays_from_the_request_it_wrote(trained_model_dir, tmp_path):
    """A scoring run writes its request as score_config.json; --config replays it (the
    same scores), and a flag beside it changes its one field."""
    from ic_anogan.config import DataConfig
    from ic_anogan.jobs import score_job, score_request
    model_dir = trained_model_dir["model_dir"]
    first = tmp_path / "first"
    request = score_request.ScoreRequest(
        model_dir=model_dir, modes=["encoder"], output_dir=str(first),
        log_dir=str(tmp_path / "logs"), data=DataConfig(synthetic_counts={"good": 3,
                                                                          "short_fill": 2}))
    score_job.run(request)
    written = json.load(open(first / score_request.REQUEST_FILE))
    assert score_request.request_from_dict(written["score"]) == request
    done = run_main("score_main.py", f"--config={first / score_request.REQUEST_FILE}",
                    f"--output_dir={tmp_path / 'replay'}", "--search_batch_size=2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (open(tmp_path / "replay" / "scores.csv").read()
            == open(first / "scores.csv").read())
    replayed = json.load(open(tmp_path / "replay" / score_request.REQUEST_FILE))["score"]
    assert replayed == {**written["score"], "output_dir": str(tmp_path / "replay"),
                        "batch_size": 2}
    # Settings that apply at calibration only need a calibration to apply to.
    done = run_main("score_main.py", f"--config={first / score_request.REQUEST_FILE}",
                    "--map_kernel_size=5")
    assert done.returncode == 1 and "--map_kernel_size: sets how the map statistics" in \
        done.stderr, done.stderr[-1500:]
    (tmp_path / "train.json").write_text(json.dumps({"run": {}}))
    done = run_main("score_main.py", f"--config={tmp_path / 'train.json'}")
    assert done.returncode == 1 and "expected a scoring run's score_config.json" in \
        done.stderr, done.stderr[-1500:]


def test_a_score_request_round_trips_through_json_and_is_checked_when_read():
    from ic_anogan.config import DataConfig, SearchRuntime
    from ic_anogan.jobs import score_request
    request = score_request.ScoreRequest(
        model_dir="m", modes=("search", "encoder"), threshold=None, batch_size=8,
        data=DataConfig(data_dir="d", skip_corrupt=True),
        overrides=score_request.SearchOverrides(steps=7, seed=3),
        recalibration=score_request.Recalibration(
            DataConfig(data_dir="good"), percentile=98.0, threshold_rule="percentile",
            map_overrides=score_request.MapOverrides(kernel_size=5, residual="signed")),
        runtime=SearchRuntime(jit_compile=True))
    values = json.loads(json.dumps(score_request.request_to_dict(request)))
    assert score_request.request_from_dict(values) == \
        __import__("dataclasses").replace(request, modes=["search", "encoder"])
    values["recalibration"]["map_overrides"]["kernel_size"] = 4
    import pytest
    from ic_anogan.config import ConfigError
    with pytest.raises(ConfigError, match=r"^map.kernel_size=4: expected an odd integer"):
        score_request.request_from_dict(values)
