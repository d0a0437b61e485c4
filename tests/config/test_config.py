import pytest

from ic_anogan import config


def test_defaults_are_the_papers():
    assert config.ModelConfig() == config.ModelConfig(64, 100, 64)
    search = config.SearchConfig()
    assert (search.steps, search.discrimination_weight) == (500, 0.1)
    train = config.TrainConfig()
    assert (train.learning_rate, train.beta_1, train.validation_fraction) == (2e-4, 0.5, 0.1)


@pytest.mark.parametrize("cls, kwargs, field", [
    (config.ModelConfig, {"image_size": 48}, "image_size"),
    (config.ModelConfig, {"latent_dim": 0}, "latent_dim"),
    (config.ModelConfig, {"base_filters": -1}, "base_filters"),
    (config.TrainConfig, {"batch_size": 0}, "batch_size"),
    (config.TrainConfig, {"validation_fraction": 1.0}, "validation_fraction"),
    (config.SearchConfig, {"steps": -1}, "search_steps"),
    (config.SearchConfig, {"discrimination_weight": 1.5}, "discrimination_weight"),
    (config.SearchConfig, {"restarts": 0}, "restarts"),
    (config.SearchConfig, {"clip_z": 0.0}, "clip_z"),
])
def test_bad_values_name_the_field(cls, kwargs, field):
    with pytest.raises(config.ConfigError, match=field):
        cls(**kwargs)


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
