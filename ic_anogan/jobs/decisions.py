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
from ic_anogan.jobs.score_request import ScoringError, SearchOverrides, UsageRefusal
from ic_anogan.models.model_dir import TrainedModel
from ic_anogan.scoring import calibration, threshold_evidence
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
      ScoringError: a mode is unknown or not supported by this model.
    """
    modes = []
    for mode in requested or [default]:
        if mode not in config_lib.SCORING_MODES + ("all",):
            raise UsageRefusal(f"--mode={mode}: expected a list of "
                               f"{', '.join(config_lib.SCORING_MODES)} or all")
        every = [default] + [m for m in supported if m != default]
        for name in every if mode == "all" else [mode]:
            if name not in modes:
                modes.append(name)
    missing = [m for m in modes if m not in supported]
    if missing:
        raise ScoringError(f"--mode={','.join(missing)}: supports only {', '.join(supported)}"
                           " (the encoder modes need an encoder: train_main.py trains one unless "
                           "--noencoder)")
    return modes


def search_settings(mode: str, records: dict, overrides: SearchOverrides) -> SearchConfig:
    """The search in force for `mode`: as calibrated, unless overridden.

    Without a calibration of this mode, the search mode's calibrated settings
    (λ, learning rate, seed, ...) are taken with the mode's default Γ.
    """
    if mode in records:
        base = calibration.stored_search_config(records[mode])
    else:
        base = config_lib.search_config_for_mode(
            mode, calibration.stored_search_config(records[Mode.SEARCH])
            if Mode.SEARCH in records else None)
    values = config_lib.to_dict(base)
    values.update({k: v for k, v in dataclasses.asdict(overrides).items() if v is not None})
    values.update(mode=mode)
    if mode == Mode.ENCODER:  # no search: Γ and restarts do not apply
        values.update(steps=0, restarts=1)
    return SearchConfig(**values)


def usable_records(model_dir: str, image_size: int, latent_dim: Optional[int],
                   replacing: Sequence[str]) -> dict:
    """The stored records that pass `calibration.check_record`. A damaged record of a
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
            calibration.check_record(record, mode, path, image_size, latent_dim)
        except calibration.CalibrationError as e:
            problem = str(e).split("; recalibrate")[0]
            if mode not in replacing:
                raise calibration.CalibrationError(
                    f"{problem}; mode {mode} is not being recalibrated and would stop scoring "
                    f"after the search: recalibrate it too (--mode="
                    f"{','.join(list(replacing) + [mode])})") from None
            log.warning("replacing the damaged calibration of mode %s: %s", mode, problem)
            continue
        usable[mode] = record
    return usable


def recalibration_map_config(records: dict, modes: Sequence[str], overrides: dict) -> MapConfig:
    """The map settings of a recalibration: overrides, else the stored ones, else defaults.

    A stored setting that was resolved from the data (MapConfig.resolve), or
    that a record from before the rule holds, is left to be resolved again
    for the new images; one the user gave is kept.
    """
    mode = next((m for m in modes if m in records and "map" in records[m]), None)
    stored = calibration.map_statistics(records[mode]) if mode else None
    values = config_lib.to_dict(stored.config if stored else MapConfig())
    if stored is not None:
        resolution = records[mode].get("map_settings", {})
        for field in config_lib.MAP_SETTINGS_FROM_DATA:
            given = resolution.get(field, {})
            if not (isinstance(given, dict) and given.get("given") is True):
                values[field] = None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return MapConfig(**values)


def decide(model: TrainedModel, modes: Sequence[str], overrides: SearchOverrides,
           image_score: Optional[str] = None, threshold: Optional[float] = None,
           chunk_steps: Optional[int] = None, runtime: SearchRuntime = SearchRuntime()) -> list:
    """Per mode, the scorer and decision in force on a model directory (`ModeDecision`s).

    Raises:
      CalibrationError: a stored calibration is damaged.
      ScoringError: a map score is asked for without map statistics.
    """
    records = calibration.read_all(model.model_dir, model.model_config.image_size,
                                   model.model_config.latent_dim)
    decisions = []
    for mode in modes:
        settings = search_settings(mode, records, overrides)
        statistics = calibration.map_statistics(records[mode]) if mode in records else None
        thresholds = calibration.thresholds(records[mode]) if mode in records else {}
        chosen = image_score or (config_lib.DEFAULT_IMAGE_SCORE if statistics
                                 else ImageScore.STUDY.value)
        if chosen != ImageScore.STUDY and statistics is None:
            raise ScoringError(
                f"--image_score={chosen}: {model.model_dir} has no good-part map statistics "
                f"for mode {mode}; add them with --calibrate_dir=<good images> (or use "
                "--image_score=study)")
        if mode in records and statistics is None and image_score is None:
            log.warning("%s: mode %s was calibrated before the map scores; deciding with the "
                        "study score A(x). Add the good-part map statistics with "
                        "--calibrate_dir=<good images> to decide from the map (map_max).",
                        model.model_dir, mode)
        if mode in records:
            changed = calibration.mismatched_settings(records[mode], settings)
            if changed and threshold is None:
                log.warning("the stored %s threshold was calibrated with other search settings "
                            "(%s); its false-reject rate does not hold. Recalibrate with "
                            "--calibrate_dir or give --threshold.", mode, ", ".join(changed))
        elif threshold is None:
            log.warning("%s has no calibration for mode %s: no threshold, is_anomaly left "
                        "empty (calibrate with --calibrate_dir)", model.model_dir, mode)
        evidence = None
        if threshold is not None:
            thresholds[chosen] = threshold
        elif mode in records:
            evidence = threshold_evidence.evidence(records[mode], chosen)
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
            raise ScoringError(f"--image_score={chosen}: the export has no good-part map "
                               f"statistics for mode {mode}; use --image_score=study")
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
