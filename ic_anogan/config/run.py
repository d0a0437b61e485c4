"""`RunConfig`: the root of a training run's settings, as config.json records it.

One object holds everything the train command is asked: the networks, the GAN's
training, the data, the search, the encoder and the calibration. The training
job writes it to the model directory's config.json under `run`, so a model
says in one place what produced it, and `RunConfig.from_dict` reads it back.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from ic_anogan.config.files import from_dict, to_dict
from ic_anogan.config.calibration import CalibrationConfig
from ic_anogan.config.maps import MapConfig
from ic_anogan.config.scoring import SearchConfig
from ic_anogan.config.training import DataConfig, EncoderConfig, ModelConfig, TrainConfig


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A training run's settings; None for `encoder` or `calibration` skips that step."""

    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    data: DataConfig = DataConfig()
    search: SearchConfig = SearchConfig()
    encoder: Optional[EncoderConfig] = EncoderConfig()
    calibration: Optional[CalibrationConfig] = CalibrationConfig()

    def to_dict(self) -> dict:
        """Plain JSON values, section by section."""
        return {field.name: (None if getattr(self, field.name) is None
                             else to_dict(getattr(self, field.name)))
                for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        """The inverse of `to_dict`; unknown keys (from newer versions) are ignored and
        every section is checked as it is built."""
        calibration = values.get("calibration")
        if calibration is not None:
            map_values = calibration.get("map")
            calibration = from_dict(CalibrationConfig, {
                **calibration,
                "map": None if map_values is None else from_dict(MapConfig, map_values)})
        encoder = values.get("encoder")
        return cls(model=from_dict(ModelConfig, values.get("model", {})),
                   train=from_dict(TrainConfig, values.get("train", {})),
                   data=from_dict(DataConfig, values.get("data", {})),
                   search=from_dict(SearchConfig, values.get("search", {})),
                   encoder=None if encoder is None else from_dict(EncoderConfig, encoder),
                   calibration=calibration)
