"""Scoring and export as library calls: modes, settings, thresholds, reports.

`ic-anogan-score` and `ic-anogan-export` build a `ScoreRequest` from their
flags and call `run`; a Python user calls it the same way. What is in force
per mode is decisions.py's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Optional, Sequence

from ic_anogan import config as config_lib
from ic_anogan.config import DataConfig, SearchRuntime
from ic_anogan.core import atomic_io
from ic_anogan.data import loading
from ic_anogan.data.image_set import describe
from ic_anogan.jobs.calibrate import calibrate_modes
from ic_anogan.jobs.decisions import (ModeDecision, decide, decide_exported,
                                      recalibration_map_config, resolve_modes, search_settings,
                                      signature_names, usable_records)
from ic_anogan.jobs.score_request import (REQUEST_FILE, Recalibration, RequestError,
                                          ScoreRequest, SearchOverrides, request_to_dict)
from ic_anogan.models.model_dir import TrainedModel, load_trained_model
from ic_anogan.reporting import report as report_lib
from ic_anogan.scoring import threshold_evidence

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ModeResult:
    """One mode's scoring run."""

    decision: ModeDecision
    report: report_lib.Report
    seconds: float
    images: int
    log_dir: str


def recalibrate(model: TrainedModel, modes: Sequence[str], request: Recalibration,
                overrides: SearchOverrides, batch_size: int, log_dir: Optional[str],
                chunk_steps: Optional[int] = None, progress_factory=None,
                runtime: SearchRuntime = SearchRuntime()) -> None:
    """Recalibrates `modes` of a model directory on good images (never defect images)."""
    records = usable_records(model.model_dir, model.model_config.image_size,
                             model.model_config.latent_dim, modes)
    map_config = recalibration_map_config(records, modes, request.map_overrides)
    for mode in modes:  # refused before the search, against the model's image size
        search_settings(mode, records, overrides)
    map_config.check_image_size(model.model_config.image_size)
    good, used = loading.load_calibration_set(request.good, model.model_config.image_size)
    log.info("recalibrating %s on %s: %s", ", ".join(modes), used, describe(good))
    calibrate_modes(model, good, {mode: search_settings(mode, records, overrides)
                                  for mode in modes},
                    request.percentile, batch_size, map_config, request.good.data_dir, log_dir,
                    progress_factory, chunk_steps, runtime,
                    threshold_rule=request.threshold_rule, outliers=request.outliers)


def score(decisions: Sequence[ModeDecision], data_config: DataConfig, image_size: int,
          output_root: str, log_root: str, batch_size: int = 64, model_name: str = "",
          progress_factory=None) -> list:
    """Scores the images of `data_config` in every mode and writes each mode's report.

    With several modes, each mode's files go to `output_root/<mode>/` and its
    TensorBoard logs to `log_root/<mode>/`.

    Raises:
      DataError: the images cannot be loaded.
    """
    images = loading.load_scoring_set(data_config, image_size)
    log.info("scoring %s", describe(images))
    results = []
    several = len(decisions) > 1
    for decision in decisions:
        scorer = decision.scorer
        steps = scorer.search_config.steps
        log.info("mode %s: %s", scorer.mode, config_lib.to_dict(scorer.search_config))
        if decision.evidence:
            log.info("mode %s: the %s threshold %s", scorer.mode, decision.image_score,
                     threshold_evidence.describe_evidence(decision.evidence))
            if decision.evidence.get("warning"):
                log.warning("mode %s: %s", scorer.mode, decision.evidence["warning"])
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
                "mode": scorer.mode, "search": config_lib.to_dict(scorer.search_config),
                "threshold": decision.threshold,
                "threshold_evidence": decision.evidence,
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
    from ic_anogan.serving import export as export_lib  # keras.export only when exporting
    from ic_anogan.serving.serving_graph import ServedMode
    served = [ServedMode(d.scorer.search_config, d.threshold,
                                    d.scorer.statistics, d.image_score, d.evidence)
              for d in decisions]
    return export_lib.export_saved_model(
        model, export_dir, served[0].search, served[0].threshold,
        map_statistics=served[0].statistics, image_score=served[0].image_score,
        more_modes=served[1:], threshold_evidence=served[0].threshold_evidence)


@dataclasses.dataclass
class RunResult:
    """What `run` did: the decisions in force, and the modes scored or the export written."""

    decisions: list
    # One ModeResult per mode scored; empty when the run exported.
    modes: list = dataclasses.field(default_factory=list)
    export_path: Optional[str] = None
    output_dir: Optional[str] = None

    def export_summary(self) -> str:
        """One line saying what the export serves."""
        first = self.decisions[0]
        return (f"exported SavedModel to {self.export_path}; serving_default scores with "
                f"{first.mode} (Γ = {first.scorer.search_config.steps}, decides by "
                f"{first.image_score}, threshold {first.threshold}); signatures: "
                f"{', '.join(signature_names(self.decisions))}")


def run(request: ScoreRequest, progress_factory=None, default_log_root: str = "") -> RunResult:
    """Scores (or exports) as `request` says; every place written is checked first.

    Raises:
      ScoringError, ModelDirError, CalibrationError, ExportError, DataError.
    """
    model = exported = None
    if request.saved_model:
        # TF's SavedModel loader only when scoring an export.
        from ic_anogan.serving import client as serving
        exported = serving.ExportedModel(request.saved_model)
        modes = resolve_modes(exported.modes, request.modes, exported.default_mode)
        image_size = exported.image_size
    else:
        model = load_trained_model(request.model_dir)
        modes = resolve_modes(model.scoring_modes, request.modes,
                              config_lib.default_mode(model.encoder is not None))
        image_size = model.model_config.image_size
    if request.threshold is not None and len(modes) > 1:
        raise RequestError(("score.threshold", "score.modes"), "a threshold applies to one "
                           "mode; give a single mode", values=(request.threshold,
                                                               ",".join(modes)))
    where = request.model_dir or request.saved_model
    output_root = request.output_dir or os.path.join(where, "scores")
    log_root = request.log_dir or default_log_root
    places = ([("export_dir", request.export_dir)] if request.export_dir
              else [("output_dir", output_root), ("log_dir", log_root)])
    if request.recalibration:
        places.append(("model_dir", request.model_dir))
    for field, folder in places:
        reason = atomic_io.unwritable_reason(folder)
        if reason:
            raise RequestError(f"score.{field}", reason, folder)

    data = request.data
    if model is not None and request.data.data_dir is None:
        # The synthetic package the model was trained on, unless asked otherwise.
        trained_on = model.metadata.get("data", {}).get("synthetic_package")
        if trained_on and data.synthetic_package is None:
            data = dataclasses.replace(data, synthetic_package=trained_on)
    if request.recalibration:
        recalibrate(model, modes, request.recalibration, request.overrides,
                    request.batch_size, log_root, request.chunk_steps, progress_factory,
                    request.runtime)
    if exported is not None:
        decisions = decide_exported(exported, modes, request.image_score, request.threshold)
    else:
        decisions = decide(model, modes, request.overrides, request.image_score,
                           request.threshold, request.chunk_steps, request.runtime)
    if request.export_dir:
        return RunResult(decisions, export_path=export(model, decisions, request.export_dir))
    results = score(decisions, data, image_size, output_root, log_root, request.batch_size,
                    os.path.abspath(where), progress_factory)
    # What was asked, beside what it gave: the same request replays the run.
    config_lib.write_json(os.path.join(output_root, REQUEST_FILE),
                          {"score": request_to_dict(request)})
    return RunResult(decisions, results, output_dir=output_root)
