import pytest

from ic_anogan import config


def test_defaults_are_the_papers():
    assert config.ModelConfig() == config.ModelConfig(64, 100, 64)
    search = config.SearchConfig()
    assert (search.steps, search.discrimination_weight) == (500, 0.1)
    train = config.TrainConfig()
    assert (train.learning_rate, train.beta_1, train.validation_fraction) == (2e-4, 0.5, 0.1)


@pytest.mark.parametrize("cls, kwargs, path", [
    (config.ModelConfig, {"image_size": 48}, "model.image_size"),
    (config.ModelConfig, {"latent_dim": 0}, "model.latent_dim"),
    (config.ModelConfig, {"base_filters": -1}, "model.base_filters"),
    (config.TrainConfig, {"batch_size": 0}, "train.batch_size"),
    (config.TrainConfig, {"validation_fraction": 1.0}, "train.validation_fraction"),
    (config.SearchConfig, {"steps": -1}, "search.steps"),
    (config.SearchConfig, {"discrimination_weight": 1.5}, "search.discrimination_weight"),
    (config.SearchConfig, {"restarts": 0}, "search.restarts"),
    (config.SearchConfig, {"clip_z": 0.0}, "search.clip_z"),
    (config.EncoderConfig, {"batch_size": 0}, "encoder.batch_size"),
    (config.MapConfig, {"neighbours": -1}, "map.neighbours"),
    (config.CalibrationConfig, {"outliers": "drop"}, "calibration.outliers"),
])
def test_bad_values_name_the_field_path(cls, kwargs, path):
    """The library names a setting by its field path, never by a command's flag."""
    value = next(iter(kwargs.values()))
    with pytest.raises(config.ConfigError) as refused:
        cls(**kwargs)
    assert str(refused.value).startswith(f"{path}={value!r}: expected "), refused.value
    assert refused.value.paths == (path,) and "--" not in str(refused.value)


def test_json_round_trip(tmp_path):
    original = config.SearchConfig(steps=7, clip_z=2.0, restarts=3)
    path = str(tmp_path / "c.json")
    config.write_json(path, config.to_dict(original))
    assert config.from_dict(config.SearchConfig, config.read_json(path)) == original
    # Unknown keys (from a newer version) are ignored.
    assert config.from_dict(config.SearchConfig, {"steps": 3, "future": 1}).steps == 3


def test_read_json_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        config.read_json(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        config.read_json(str(bad))


def test_run_config_round_trips_through_json(tmp_path):
    """The root config survives config.json's JSON, its optional steps included, and is
    checked again when read back."""
    run = config.RunConfig(
        model=config.ModelConfig(image_size=32, base_filters=None),
        train=config.TrainConfig(batch_size=16, updates=500, augment=True),
        data=config.DataConfig(synthetic_package="mixed", synthetic_counts={"good": 4}),
        search=config.SearchConfig(steps=9, clip_z=1.5),
        encoder=None,
        calibration=config.CalibrationConfig(percentile=98.0,
                                             map=config.MapConfig(neighbours=0)))
    path = str(tmp_path / "run.json")
    config.write_json(path, run.to_dict())
    assert config.RunConfig.from_dict(config.read_json(path)) == run
    assert config.RunConfig.from_dict(
        config.RunConfig(calibration=config.CalibrationConfig(map=None)).to_dict()
    ).calibration.map is None
    with pytest.raises(config.ConfigError, match="calibration.percentile=150"):
        config.RunConfig.from_dict({**run.to_dict(), "calibration": {"percentile": 150}})


def test_errors_share_one_base_and_keep_their_old_types():
    from ic_anogan.core.errors import IcAnoganError
    from ic_anogan.data.image_set import DataError
    from ic_anogan.jobs.score_request import RequestError, ScoringError
    from ic_anogan.models.model_dir import ModelDirError
    from ic_anogan.scoring.calibration import CalibrationError
    from ic_anogan.serving.signatures import ExportError
    from ic_anogan.training.callbacks import NonFiniteLossError
    from ic_anogan.training.cluster import ClusterConfigError
    from ic_anogan.training.distribution import WorkerLostError
    for error in (config.ConfigError, DataError, ModelDirError, CalibrationError, ExportError,
                  ScoringError, RequestError, ClusterConfigError, config.SettingError):
        assert issubclass(error, IcAnoganError) and issubclass(error, ValueError), error
    for error in (NonFiniteLossError, WorkerLostError):
        assert issubclass(error, IcAnoganError) and issubclass(error, RuntimeError), error
    with pytest.raises(IcAnoganError, match="missing.json: file not found"):
        config.read_json("missing.json")


def test_modes_and_image_scores_are_one_source():
    assert config.SCORING_MODES == ("search", "encoder", "encoder_search")
    assert config.IMAGE_SCORES == ("study", "map_max", "map_topk")
    assert config.Mode.ENCODER_SEARCH == "encoder_search"
    assert f"{config.Mode.SEARCH}" == "search" and str(config.ImageScore.MAP_MAX) == "map_max"
    assert {"search": 1}[config.Mode.SEARCH] == 1
    assert config.SearchConfig(mode=config.Mode.ENCODER_SEARCH, steps=5).mode == "encoder_search"
    # What a score is and how its search runs are kept apart.
    assert "jit_compile" not in config.SCORE_DEFINING
    assert set(config.SCORE_DEFINING) == {f.name for f in
                                          __import__("dataclasses").fields(config.SearchConfig)}
