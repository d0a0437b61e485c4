"""Every setting, each checked when it is built, with its JSON round trip.

The settings live in the modules below; this package re-exports them so that
`from ic_anogan.config import SearchConfig` and `config.SearchConfig` read the
same one class. Every config validates itself on construction, so a bad value
fails before any work starts, with a message that names the field path
(`map.neighbours`); the commands map field paths onto their flags.

  checks    the errors naming a field path, `require`, and `setting` (a field with its help)
  modes     scoring modes and image scores (enums)
  training  data, networks, GAN and encoder training
  scoring   the search and its runtime switches
  maps      the anomaly map
  calibration  how good images set thresholds (rule, outliers) and map statistics
  files     JSON round trips
  run       RunConfig, the root of a training run's settings (config.json's `run`)
"""

from ic_anogan.config.checks import ConfigError, SettingError, is_finite, require, setting
from ic_anogan.config.files import from_dict, read_json, to_dict, write_json
from ic_anogan.config.run import RunConfig
from ic_anogan.config.modes import (DEFAULT_IMAGE_SCORE, DEFAULT_STEPS, IMAGE_SCORES, MAP_SCORES,
                                    SCORING_MODES, ImageScore, Mode, default_mode, map_score_name)
from ic_anogan.config.maps import (MAP_KERNELS, MAP_LEGACY_DEFAULTS, MAP_RESIDUALS,
                                   MAP_SETTINGS_FROM_DATA, MAX_ALIGNMENT_TOLERANCE, MapConfig)
from ic_anogan.config.scoring import (SCORE_DEFINING, SearchConfig, SearchRuntime,
                                      search_config_for_mode)
from ic_anogan.config.calibration import (OUTLIER_POLICIES, THRESHOLD_RULES,
                                          CalibrationConfig)
from ic_anogan.config.training import (D_PENALTIES, DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_UPDATES,
                                       MIN_UPDATES_PER_EPOCH, SELECTION_EVALUATIONS,
                                       STUDY_TEST_COUNTS, STUDY_TRAIN_GOOD, SUPPORTED_IMAGE_SIZES,
                                       TEXTURE_TEST_COUNTS,
                                       SYNTHETIC_PACKAGES, SYNTHETIC_SPLITS, DataConfig,
                                       EncoderConfig, ModelConfig, TrainConfig)

__all__ = [
    "CalibrationConfig", "ConfigError", "DEFAULT_IMAGE_SCORE", "DEFAULT_MAX_IMAGE_PIXELS",
    "DEFAULT_STEPS", "DEFAULT_UPDATES", "D_PENALTIES", "DataConfig", "EncoderConfig",
    "IMAGE_SCORES", "ImageScore", "MAP_KERNELS", "MAP_LEGACY_DEFAULTS", "MAP_RESIDUALS",
    "MAP_SETTINGS_FROM_DATA",
    "MAP_SCORES", "MAX_ALIGNMENT_TOLERANCE", "MIN_UPDATES_PER_EPOCH", "MapConfig", "Mode",
    "ModelConfig", "OUTLIER_POLICIES", "RunConfig", "SCORE_DEFINING", "SCORING_MODES",
    "SELECTION_EVALUATIONS", "STUDY_TEST_COUNTS", "STUDY_TRAIN_GOOD", "SUPPORTED_IMAGE_SIZES",
    "TEXTURE_TEST_COUNTS",
    "SYNTHETIC_PACKAGES", "SYNTHETIC_SPLITS", "SearchConfig", "SearchRuntime", "SettingError",
    "THRESHOLD_RULES",
    "TrainConfig", "default_mode",
    "from_dict", "is_finite", "map_score_name", "read_json", "require",
    "search_config_for_mode", "setting", "to_dict", "write_json",
]
