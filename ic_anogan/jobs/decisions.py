"""What is in force per mode: search settings, deciding score, threshold, statistics.

The search is as calibrated unless overridden; for a model directory or an
export."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Optional, Sequence

from ic_anogan import config as config_lib
from ic_anogan.config import ImageScore, MapConfig, Mode, SearchConfig, SearchRuntime
from ic_anogan.jobs.score_request import MapOverrides, RequestError, SearchOverrides
from ic_anogan.models.model_dir import TrainedModel
from ic_anogan.scoring import calibration
from ic_anogan.scoring.calibration_record import Calibration, CalibrationError
from ic_anogan.scoring.scorer import Scorer, SearchScorer

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ModeDecision:
    """What is in force for one mode: its scorer, the score that decides and its threshold."""

    scorer: Scorer
    image_score: str
    threshold: Optional[float]
    # Every image score's threshold, for the side-by-side figures.
    thresholds: dict
    # What the threshold rests on (threshold_evidence.evidence); None when it was given or is
    # from before thresholds carried their evidence.
    evidence: Optional[dict] = None

    @property
    def mode(self) -> str:
        return self.scorer.mode


def signature_names(decisions: Sequence["ModeDecision"]) -> list:
    """The signatures an export of `decisions` has."""
    from ic_anogan.serving import signatures
    return signatures.signature_names([d.mode for d in decisions])


def resolve_modes(supported: Sequence[str], requested: Optional[Sequence[str]],
                  default: str) -> list:
    """The modes to run, in order; 'all' means every supported mode, the default first (an
    export serves its first mode as serving_default).

    Raises:
      RequestError: a mode is unknown or not supported by this model.
    """
    modes = []  # names were checked by the request (ScoreRequest); support is checked here
    for mode in requested or [default]:
        every = [default] + [m for m in supported if m != default]
        for name in every if mode == "all" else [mode]:
            if name not in modes:
                modes.append(name)
    missing = [m for m in modes if m not in supported]
    if missing:
        raise RequestError("score.modes", f"supports only {', '.join(supported)} (the encoder "
                           "modes need an encoder: train the model with one)",
                           ",".join(missing))
    return modes


def search_settings(mode: str, records: dict, overrides: SearchOverrides) -> SearchConfig:
    """The search in force for `mode`: as calibrated, unless overridden.

    Without a calibration of this mode, the search mode's calibrated settings
    (λ, learning rate, seed, ...) are taken with the mode's default Γ.
    """
    if mode in records:
        base = records[mode].search_config
    else:
        base = config_lib.search_config_for_mode(
            mode, records[Mode.SEARCH].search_config if Mode.SEARCH in records else None)
    values = config_lib.to_dict(base)
    values.update(overrides.given())
    values.update(mode=mode)
    if mode == Mode.ENCODER:  # no search: Γ and restarts do not apply
        values.update(steps=0, restarts=1)
    return SearchConfig(**values)


def usable_records(model_dir: str, image_size: int, latent_dim: Optional[int],
                   replacing: Sequence[str]) -> dict:
    """The stored calibrations whose records pass their check. A damaged record of a
    mode in `replacing` is left out with a warning, so that recalibration replaces it
    without reading it; a damaged record of another mode is refused, before any search,
    naming the mode to recalibrate with it.

    Raises:
      CalibrationError: a mode not being recalibrated has a damaged record.
    """
    usable = {}
    path = os.path.join(model_dir, calibration.CALIBRATION_FILE)
    for mode, record in calibration.read_raw(model_dir).items():
        try:
            checked = Calibration.checked(record, mode, path, image_size, latent_dim)
        except CalibrationError as e:
            problem = str(e).split("; recalibrate")[0]
            if mode not in replacing:
                raise CalibrationError(
                    f"{problem}; mode {mode} is not being recalibrated and would stop scoring "
                    f"after the search: recalibrate it too",
                    mode=",".join(list(replacing) + [mode])) from None
            log.warning("replacing the damaged calibration of mode %s: %s", mode, problem)
            continue
        usable[mode] = checked
    return usable


def recalibration_map_config(records: dict, modes: Sequence[str],
                             overrides: MapOverrides) -> MapConfig:
    """The map settings of a recalibration: overrides, else the stored ones, else defaults.

    A stored setting that was resolved from the data (MapConfig.resolve), or
    that a record from before the rule holds, is left to be resolved again
    for the new images; one the user gave is kept.
    """
    mode = next((m for m in modes if m in records and "map" in records[m]), None)
    stored = records[mode].map_statistics if mode else None
    values = config_lib.to_dict(stored.config if stored else MapConfig())
    if stored is not None:
        resolution = records[mode].get("map_settings", {})
        for field in config_lib.MAP_SETTINGS_FROM_DATA:
            given = resolution.get(field, {})
            if not (isinstance(given, dict) and given.get("given") is True):
                values[field] = None
    values.update(overrides.given())
    return MapConfig(**values)


def decide(model: TrainedModel, modes: Sequence[str], overrides: SearchOverrides,
           image_score: Optional[str] = None, threshold: Optional[float] = None,
           chunk_steps: Optional[int] = None, runtime: SearchRuntime = SearchRuntime()) -> list:
    """Per mode, the scorer and decision in force on a model directory (`ModeDecision`s).

    Raises:
      CalibrationError: a stored calibration is damaged.
      RequestError: a map score is asked for without map statistics.
    """
    records = calibration.read_all(model.model_dir, model.model_config.image_size,
                                   model.model_config.latent_dim)
    decisions = []
    for mode in modes:
        settings = search_settings(mode, records, overrides)
        record = records.get(mode)
        statistics = record.map_statistics if record else None
        thresholds = record.thresholds if record else {}
        chosen = image_score or (config_lib.DEFAULT_IMAGE_SCORE if statistics
                                 else ImageScore.STUDY.value)
        if chosen != ImageScore.STUDY and statistics is None:
            raise RequestError(
                "score.image_score", f"{model.model_dir} has no good-part map statistics for "
                f"mode {mode}; add them by recalibrating on good images, or decide by study",
                chosen, remedy={"recalibration.good": "<good images>"})
        if mode in records and statistics is None and image_score is None:
            log.warning("%s: mode %s was calibrated before the map scores; deciding with the "
                        "study score A(x). Recalibrate it on good images to add the "
                        "good-part map statistics and decide from the map (map_max).",
                        model.model_dir, mode)
        if mode in records:
            changed = records[mode].mismatched_settings(settings)
            if changed and threshold is None:
                log.warning("the stored %s threshold was calibrated with other search settings "
                            "(%s); its false-reject rate does not hold. Recalibrate it on good "
                            "images, or give a threshold.", mode, ", ".join(changed))
        elif threshold is None:
            log.warning("%s has no calibration for mode %s: no threshold, is_anomaly left "
                        "empty (calibrate it on good images)", model.model_dir, mode)
        evidence = None
        if threshold is not None:
            thresholds[chosen] = threshold
        elif mode in records:
            evidence = records[mode].evidence(chosen)
        decisions.append(ModeDecision(
            SearchScorer(model, settings, statistics, chunk_steps, runtime), chosen,
            thresholds.get(chosen), thresholds, evidence))
    return decisions


def decide_exported(exported, modes: Sequence[str], image_score: Optional[str] = None,
                    threshold: Optional[float] = None) -> list:
    """Per mode, the scorer and decision of an export (serving.ExportedModel)."""
    decisions = []
    for mode in modes:
        scorer = exported.scorer(mode)
        chosen = image_score or scorer.image_score
        if chosen != ImageScore.STUDY and scorer.statistics is None:
            raise RequestError("score.image_score", "the export has no good-part map "
                               f"statistics for mode {mode}; decide by study", chosen)
        if chosen != scorer.image_score:
            log.warning("the export decides mode %s by %s; %s has no threshold baked in, so "
                        "is_anomaly in scores.csv is left empty", mode, scorer.image_score,
                        chosen)
        thresholds = {scorer.image_score: exported.thresholds[mode]}
        evidence = None
        if threshold is not None:
            thresholds[chosen] = threshold
        elif chosen == scorer.image_score:
            evidence = exported.threshold_evidence.get(mode)
        decisions.append(ModeDecision(scorer, chosen, thresholds.get(chosen), thresholds,
                                      evidence))
    return decisions
