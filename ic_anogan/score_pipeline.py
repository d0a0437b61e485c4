"""Scoring and export as library calls: modes, settings, thresholds, reports.

`score_main.py` and `export_main.py` build their arguments from flags and
call `score` or `export`; a Python user calls them the same way. Per mode,
`decide` settles what is in force: the search (as calibrated, unless
overridden), the score that decides, its threshold and the map statistics.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Optional, Sequence

from ic_anogan import calibration, config as config_lib, data as data_lib, report as report_lib
from ic_anogan import atomic_io, scoring
from ic_anogan.config import DataConfig, MapConfig, SearchConfig
from ic_anogan.image_set import describe
from ic_anogan.model_dir import TrainedModel, load_trained_model
from ic_anogan.score_request import (Recalibration, ScoreRequest, ScoringError, SearchOverrides,
                                     UsageRefusal)

log = logging.getLogger(__name__)


def signature_names(decisions: Sequence["ModeDecision"]) -> list:
    """The signatures an export of `decisions` has."""
    from ic_anogan import signatures
    return signatures.signature_names([d.mode for d in decisions])


@dataclasses.dataclass
class ModeDecision:
    """What is in force for one mode: its scorer, the score that decides and its threshold."""

    scorer: scoring.Scorer
    image_score: str
    threshold: Optional[float]
    # Every image score's threshold, for the side-by-side figures.
    thresholds: dict

    @property
    def mode(self) -> str:
        return self.scorer.mode


@dataclasses.dataclass
class ModeResult:
    """One mode's scoring run."""

    decision: ModeDecision
    report: report_lib.Report
    seconds: float
    images: int
    log_dir: str


def resolve_modes(supported: Sequence[str], requested: Optional[Sequence[str]],
                  default: str) -> list:
    """The modes to run, in order; 'all' means every supported mode.

    Raises:
      ScoringError: a mode is unknown or not supported by this model.
    """
    modes = []
    for mode in requested or [default]:
        if mode not in config_lib.SCORING_MODES + ("all",):
            raise UsageRefusal(f"--mode={mode}: expected a list of "
                               f"{', '.join(config_lib.SCORING_MODES)} or all")
        for name in supported if mode == "all" else [mode]:
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
            mode, calibration.stored_search_config(records["search"])
            if "search" in records else None)
    values = config_lib.to_dict(base)
    values.update({k: v for k, v in dataclasses.asdict(overrides).items()
                   if v is not None and k != "jit_compile"})
    values.update(mode=mode, jit_compile=overrides.jit_compile)
    if mode == "encoder":  # no search: Γ and restarts do not apply
        values.update(steps=0, restarts=1)
    return SearchConfig(**values)


def usable_records(model_dir: str, image_size: int) -> dict:
    """The stored records that pass `calibration.check_record`; damaged ones are left
    out with a warning, so that recalibration replaces them without reading them."""
    usable = {}
    path = os.path.join(model_dir, calibration.CALIBRATION_FILE)
    for mode, record in calibration.read_raw(model_dir).items():
        try:
            calibration.check_record(record, mode, path, image_size)
        except calibration.CalibrationError as e:
            log.warning("replacing a damaged calibration: %s", str(e).split("; recal")[0])
            continue
        usable[mode] = record
    return usable


def recalibration_map_config(records: dict, modes: Sequence[str], overrides: dict) -> MapConfig:
    """The map settings of a recalibration: overrides, else the stored ones, else defaults."""
    stored = next((calibration.map_statistics(records[m]) for m in modes
                   if m in records and "map" in records[m]), None)
    values = config_lib.to_dict(stored.config if stored else MapConfig())
    values.update({k: v for k, v in overrides.items() if v is not None})
    return MapConfig(**values)


def decide(model: TrainedModel, modes: Sequence[str], overrides: SearchOverrides,
           image_score: Optional[str] = None, threshold: Optional[float] = None,
           chunk_steps: Optional[int] = None) -> list:
    """Per mode, the scorer and decision in force on a model directory (`ModeDecision`s).

    Raises:
      CalibrationError: a stored calibration is damaged.
      ScoringError: a map score is asked for without map statistics.
    """
    records = calibration.read_all(model.model_dir, model.model_config.image_size)
    decisions = []
    for mode in modes:
        settings = search_settings(mode, records, overrides)
        statistics = calibration.map_statistics(records[mode]) if mode in records else None
        thresholds = calibration.thresholds(records[mode]) if mode in records else {}
        chosen = image_score or (config_lib.DEFAULT_IMAGE_SCORE if statistics else "study")
        if chosen != "study" and statistics is None:
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
        if threshold is not None:
            thresholds[chosen] = threshold
        decisions.append(ModeDecision(
            scoring.SearchScorer(model, settings, statistics, chunk_steps), chosen,
            thresholds.get(chosen), thresholds))
    return decisions


def decide_exported(exported, modes: Sequence[str], image_score: Optional[str] = None,
                    threshold: Optional[float] = None) -> list:
    """Per mode, the scorer and decision of an export (serving.ExportedModel)."""
    decisions = []
    for mode in modes:
        scorer = exported.scorer(mode)
        chosen = image_score or scorer.image_score
        if chosen != "study" and scorer.statistics is None:
            raise ScoringError(f"--image_score={chosen}: the export has no good-part map "
                               f"statistics for mode {mode}; use --image_score=study")
        if chosen != scorer.image_score:
            log.warning("the export decides mode %s by %s; %s has no threshold baked in, so "
                        "is_anomaly in scores.csv is left empty", mode, scorer.image_score,
                        chosen)
        thresholds = {scorer.image_score: exported.thresholds[mode]}
        if threshold is not None:
            thresholds[chosen] = threshold
        decisions.append(ModeDecision(scorer, chosen, thresholds.get(chosen), thresholds))
    return decisions


def recalibrate(model: TrainedModel, modes: Sequence[str], request: Recalibration,
                overrides: SearchOverrides, batch_size: int, log_dir: Optional[str],
                chunk_steps: Optional[int] = None, progress_factory=None) -> None:
    """Recalibrates `modes` of a model directory on good images (never defect images)."""
    records = usable_records(model.model_dir, model.model_config.image_size)
    map_config = recalibration_map_config(records, modes, request.map_overrides)
    for mode in modes:  # refused before the search, against the model's image size
        search_settings(mode, records, overrides)
    try:
        map_config.check_image_size(model.model_config.image_size)
    except config_lib.ConfigError as e:
        raise UsageRefusal(e.as_flag()) from None
    good, used = data_lib.load_calibration_set(request.good, model.model_config.image_size)
    log.info("recalibrating %s on %s: %s", ", ".join(modes), used, describe(good))
    for mode in modes:
        settings = search_settings(mode, records, overrides)
        progress = (progress_factory(len(good) * settings.steps, f"calibration ({mode})")
                    if progress_factory and settings.steps else None)
        scoring.calibrate(model, good, settings, request.percentile, batch_size,
                          source=request.good.data_dir, progress=progress,
                          chunk_steps=chunk_steps or max(1, settings.steps // 20),
                          map_config=map_config, log_dir=log_dir)


def score(decisions: Sequence[ModeDecision], data_config: DataConfig, image_size: int,
          output_root: str, log_root: str, batch_size: int = 64, model_name: str = "",
          progress_factory=None) -> list:
    """Scores the images of `data_config` in every mode and writes each mode's report.

    With several modes, each mode's files go to `output_root/<mode>/` and its
    TensorBoard logs to `log_root/<mode>/`.

    Raises:
      DataError: the images cannot be loaded.
    """
    images = data_lib.load_scoring_set(data_config, image_size)
    log.info("scoring %s", describe(images))
    results = []
    several = len(decisions) > 1
    for decision in decisions:
        scorer = decision.scorer
        steps = int(scorer.settings["steps"])
        log.info("mode %s: %s", scorer.mode, scorer.settings)
        progress = progress_factory(len(images) * steps, scorer.mode) if (
            progress_factory and steps) else None
        start = time.time()
        outputs = scorer.score(images, batch_size, progress)
        seconds = time.time() - start
        output_dir = os.path.join(output_root, scorer.mode) if several else output_root
        log_dir = os.path.join(log_root, scorer.mode) if several else log_root
        statistics = scorer.statistics
        report = report_lib.write_report(
            output_dir, images, outputs, decision.threshold, log_dir=log_dir,
            image_score=decision.image_score, thresholds=decision.thresholds,
            map_statistics=statistics, extra={
                "mode": scorer.mode, "search": scorer.settings, "threshold": decision.threshold,
                "map": None if statistics is None else {
                    "config": config_lib.to_dict(statistics.config), "count": statistics.count,
                    "pixel_threshold": statistics.pixel_threshold},
                "search_seconds": seconds, "seconds_per_image": seconds / len(images),
                "images_per_s": len(images) / max(seconds, 1e-9),
                "img_steps_per_s": len(images) * steps / max(seconds, 1e-9),
                "model": model_name, "data": data_config.data_dir or "synthetic"})
        log.info("%s: scored %d images in %.1f s (%.1f images/s)", scorer.mode, len(images),
                 seconds, len(images) / max(seconds, 1e-9))
        results.append(ModeResult(decision, report, seconds, len(images), log_dir))
    return results


def export(model: TrainedModel, decisions: Sequence[ModeDecision], export_dir: str) -> str:
    """Exports `decisions` (the first served by serving_default) to EXPORT_DIR/<next version>/.

    Raises:
      ExportError: the export cannot be written.
    """
    from ic_anogan import export as export_lib  # keras.export only when exporting
    served = [export_lib.ServedMode(SearchConfig(**d.scorer.settings), d.threshold,
                                    d.scorer.statistics, d.image_score) for d in decisions]
    return export_lib.export_saved_model(
        model, export_dir, served[0].search, served[0].threshold,
        map_statistics=served[0].statistics, image_score=served[0].image_score,
        more_modes=served[1:])


@dataclasses.dataclass
class RunResult:
    """What `run` did: the modes scored, or the export written."""

    modes: list
    export_path: Optional[str] = None
    output_dir: Optional[str] = None

    def export_summary(self) -> str:
        """One line saying what the export serves."""
        first = self.modes[0]
        return (f"exported SavedModel to {self.export_path}; serving_default scores with "
                f"{first.mode} (Γ = {first.scorer.settings['steps']}, decides by "
                f"{first.image_score}, threshold {first.threshold}); signatures: "
                f"{', '.join(signature_names(self.modes))}")


def run(request: ScoreRequest, progress_factory=None, default_log_root: str = "") -> RunResult:
    """Scores (or exports) as `request` says; every place written is checked first.

    Raises:
      ScoringError, ModelDirError, CalibrationError, ExportError, DataError.
    """
    model = exported = None
    if request.saved_model:
        from ic_anogan import serving  # TF's SavedModel loader only when scoring an export
        exported = serving.ExportedModel(request.saved_model)
        modes = resolve_modes(exported.modes, request.modes, exported.default_mode)
        image_size = exported.image_size
    else:
        model = load_trained_model(request.model_dir)
        modes = resolve_modes(model.scoring_modes, request.modes,
                              config_lib.default_mode(model.encoder is not None))
        image_size = model.model_config.image_size
    if request.threshold is not None and len(modes) > 1:
        raise UsageRefusal("--threshold applies to one mode; give a single --mode")
    where = request.model_dir or request.saved_model
    output_root = request.output_dir or os.path.join(where, "scores")
    log_root = request.log_dir or default_log_root
    places = ([("export_dir", request.export_dir)] if request.export_dir
              else [("output_dir", output_root), ("log_dir", log_root)])
    if request.recalibration:
        places.append(("model_dir", request.model_dir))
    for flag, folder in places:
        reason = atomic_io.unwritable_reason(folder)
        if reason:
            raise UsageRefusal(f"--{flag}={folder}: {reason}")

    data = request.data
    if model is not None and request.data.data_dir is None:
        # The synthetic package the model was trained on, unless asked otherwise.
        trained_on = model.metadata.get("data", {}).get("synthetic_package")
        if trained_on and data.synthetic_package is None:
            data = dataclasses.replace(data, synthetic_package=trained_on)
    if request.recalibration:
        recalibrate(model, modes, request.recalibration, request.overrides,
                    request.batch_size, log_root, request.chunk_steps, progress_factory)
    if exported is not None:
        decisions = decide_exported(exported, modes, request.image_score, request.threshold)
    else:
        decisions = decide(model, modes, request.overrides, request.image_score,
                           request.threshold, request.chunk_steps)
    if request.export_dir:
        return RunResult(decisions, export_path=export(model, decisions, request.export_dir))
    results = score(decisions, data, image_size, output_root, log_root, request.batch_size,
                    os.path.abspath(where), progress_factory)
    return RunResult(results, output_dir=output_root)
