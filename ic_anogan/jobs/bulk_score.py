"""Bulk scoring on Apache Beam: an export over every stored file a glob matches.

The pipeline scores with the exported SavedModel, so the artefact scored in
bulk is the one TF Serving serves: the same signatures, thresholds and
`is_anomaly`. It runs in process by default and on Flink, Spark or Dataflow
with their pipeline options (docs/deployment.md):

  match globs -> read each file as bytes, keyed by path
    -> screen (empty, too large, not a PNG/JPEG/BMP/GIF: to `errors`)
    -> RunInference(score_encoded or M_encoded)   (a failed batch is retried
                                                   file by file: to `errors`)
    -> OUTPUT/scores-*.csv          scores.csv's columns, without labels
       OUTPUT/errors-*.txt          path <TAB> reason, one line per refused file
       OUTPUT/summary.json          counts, anomalies, score quantiles, the export's settings
       OUTPUT/masks/                with write_masks: each anomalous file's mask and overlay

One bad file never ends the job: it is counted and named, and scoring goes on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Optional, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from ic_anogan.config import DEFAULT_MAX_IMAGE_PIXELS, ImageScore, map_score_name
from ic_anogan.core import atomic_io
from ic_anogan.jobs.bulk_transforms import (COLUMNS, Export, Screen, SplitResults,  # noqa: F401
                                            Summarise, WriteMasks, csv_line,
                                            failed_batch_errors, summary_json)
from ic_anogan.jobs.score_request import UsageRefusal
from ic_anogan.serving import beam_handler
from ic_anogan.serving.signatures import (default_signature, mode_signature, read_settings,
                                          without_references)

log = logging.getLogger(__name__)

# Files larger than this are refused before they are read into a worker's memory.
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class BulkRequest:
    """What a bulk run is asked to do; checked by `check` before any work."""

    saved_model: str
    input_patterns: Sequence[str]
    output: str
    mode: Optional[str] = None
    write_masks: bool = False
    min_batch_size: int = 1
    max_batch_size: int = 32
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    # TensorFlow threads per worker (None: TensorFlow's default, one per core).
    tf_threads: Optional[int] = None
    large_model: bool = False


def resolve_export(saved_model: str, mode: Optional[str]) -> Export:
    """The version to score with (an export base gives its newest), refused by name when it
    is not an export or does not serve `mode`.

    Raises:
      UsageRefusal: naming --saved_model or --mode.
    """
    path = saved_model.rstrip("/")
    if FileSystems.exists(path) and not FileSystems.exists(f"{path}/saved_model.pb"):
        versions = sorted(int(os.path.basename(m.path.rstrip("/").rsplit("/saved_model.pb")[0]))
                          for m in FileSystems.match([f"{path}/*/saved_model.pb"])[0].metadata_list
                          if os.path.basename(os.path.dirname(m.path)).isdigit())
        if versions:
            path = f"{path}/{versions[-1]}"
    if not FileSystems.exists(f"{path}/saved_model.pb"):
        raise UsageRefusal(f"--saved_model={saved_model}: not an export (no saved_model.pb in "
                           "it or in a numbered version folder under it); give EXPORT_DIR or "
                           "EXPORT_DIR/<version> as written by export_main.py")
    try:
        settings = read_settings(path)
    except Exception as e:  # noqa: BLE001 - any unreadable asset means "not our export"
        raise UsageRefusal(f"--saved_model={saved_model}: not an ic-anogan export ({e})") from None
    modes = settings.get("modes") or {settings.get("mode", "search"): settings}
    chosen = mode or settings.get("mode", "search")
    if chosen not in modes:
        raise UsageRefusal(f"--mode={chosen}: this export serves {', '.join(modes)}")
    record = modes[chosen]
    # Exports from before the modes existed have the default signatures only.
    signature = (mode_signature(chosen, "encoded") if "modes" in settings
                 else default_signature("encoded"))
    # Without the reference maps: the Export travels with every transform that uses it,
    # and the maps (megabytes of base64) live in the SavedModel anyway.
    return Export(path, chosen, signature, without_references(settings),
                  record.get("image_score", ImageScore.STUDY.value), "map" in record)


def check(request: BulkRequest) -> tuple:
    """Refuses a request by name before any work: (the Export, how many files match).

    Raises:
      UsageRefusal: no file matches; --saved_model is not an export; the mode is not in
      it; --output cannot be written; a batch size or limit out of range.
    """
    if not 1 <= request.min_batch_size <= request.max_batch_size:
        raise UsageRefusal(f"--min_batch_size={request.min_batch_size}, --max_batch_size="
                           f"{request.max_batch_size}: expected 1 <= min <= max")
    for flag, value in (("max_file_bytes", request.max_file_bytes),
                        ("max_image_pixels", request.max_image_pixels)):
        if value <= 0:
            raise UsageRefusal(f"--{flag}={value}: expected a positive integer")
    export = resolve_export(request.saved_model, request.mode)
    if request.write_masks and not export.has_maps:
        raise UsageRefusal(f"--write_masks: mode {export.mode} of this export has no good-part "
                           "map statistics, so no defect masks; export a mode calibrated with "
                           "them, or leave --write_masks out")
    if not request.input_patterns:
        raise UsageRefusal("--input_pattern: expected one or more globs")
    matched = 0
    for pattern in request.input_patterns:
        try:
            found = len(FileSystems.match([pattern])[0].metadata_list)
        except Exception:  # noqa: BLE001 - Beam raises BeamIOError for a missing plain path
            found = 0
        if not found:
            raise UsageRefusal(f"--input_pattern={pattern}: no file matches")
        matched += found
    if "://" not in request.output:  # local: checked here; remote: by the first write
        folder = os.path.dirname(os.path.abspath(request.output)) or "."
        reason = atomic_io.unwritable_reason(folder)
        if reason:
            raise UsageRefusal(f"--output={request.output}: {reason}")
    return export, matched


def build(pipeline: beam.Pipeline, request: BulkRequest, export: Export, matched: int) -> None:
    """Adds the bulk-scoring transforms to `pipeline` (module doc)."""
    files = (pipeline
             | "Patterns" >> beam.Create(list(request.input_patterns))
             | "Match" >> fileio.MatchAll()
             # Matching runs where the pattern is; spreading the matched files lets the
             # runner give each worker its share (without it one worker scored them all).
             | "Spread" >> beam.Reshuffle()
             | "Open" >> fileio.ReadMatches())
    screened = files | "Screen" >> beam.ParDo(
        Screen(request.max_file_bytes, request.max_image_pixels)).with_outputs(
            Screen.ERRORS, main="files")
    handler = beam_handler.ExportSignatureHandler(
        export.path, export.signature, tf_threads=request.tf_threads,
        min_batch_size=request.min_batch_size, max_batch_size=request.max_batch_size,
        large_model=request.large_model)
    # The handler retries a batch the graph refuses file by file; anything else that
    # fails a whole batch is caught by RunInference and each of its files named.
    inferred, failures = (screened.files
                          | "Score" >> RunInference(KeyedModelHandler(handler))
                          .with_exception_handling())
    results = inferred | "Split" >> beam.ParDo(SplitResults(export)).with_outputs(
        SplitResults.ERRORS, main="scored")
    scored = results.scored
    (scored
     | "Rows" >> beam.MapTuple(lambda path, _, served: csv_line(path, served, export.has_maps))
     | "WriteScores" >> beam.io.WriteToText(f"{request.output}scores", file_name_suffix=".csv",
                                            header=",".join(COLUMNS)))
    failed_batches = failures.failed_inferences | "FailedBatches" >> beam.FlatMap(
        failed_batch_errors)
    errors = ((screened[Screen.ERRORS], results[SplitResults.ERRORS], failed_batches)
              | "Errors" >> beam.Flatten())
    (errors
     | "ErrorLines" >> beam.MapTuple(lambda path, reason: f"{path}\t{reason}")
     | "WriteErrors" >> beam.io.WriteToText(f"{request.output}errors", file_name_suffix=".txt"))
    decision = map_score_name(export.image_score) if export.has_maps else None
    statistics = (scored
                  | "ForSummary" >> beam.MapTuple(lambda _, __, served: (
                      float(served["map_score"] if decision else served["anomaly_score"]),
                      float(served["anomaly_score"]), bool(served["is_anomaly"])))
                  | "Summarise" >> beam.CombineGlobally(Summarise()))
    refused = errors | "CountRefused" >> beam.combiners.Count.Globally()
    (pipeline
     | "One" >> beam.Create([None])
     | "Summary" >> beam.Map(summary_json, beam.pvalue.AsSingleton(statistics),
                             beam.pvalue.AsSingleton(refused), export, matched)
     | "WriteSummary" >> beam.io.WriteToText(f"{request.output}summary.json", num_shards=1,
                                             shard_name_template=""))
    if request.write_masks:
        size = int(export.settings["model"]["image_size"])
        (scored
         | "Anomalous" >> beam.Filter(lambda element: bool(element[2]["is_anomaly"]))
         | "WriteMasks" >> beam.ParDo(WriteMasks(f"{request.output}masks", size)))


def pipeline_options(beam_args: Sequence[str]):
    """Beam's options from the command line's remaining flags; (runner, options). Without
    --runner the pipeline runs in process on Beam's FnApiRunner, which needs no download
    (the DirectRunner first tries to fetch its Prism runner)."""
    from apache_beam.options.pipeline_options import PipelineOptions
    options = PipelineOptions(list(beam_args))
    if any(arg == "--runner" or arg.startswith("--runner=") for arg in beam_args):
        return None, options
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    return FnApiRunner(), options


def run(request: BulkRequest, export: Export, matched: int,
        beam_args: Sequence[str] = ()) -> dict:
    """Runs the pipeline to completion and returns summary.json's content.

    Raises:
      UsageRefusal: as `check` (call it first to refuse before any work).
    """
    runner, options = pipeline_options(beam_args)
    log.info("scoring %d files matching %s with %s (mode %s, signature %s)", matched,
             ", ".join(request.input_patterns), export.path, export.mode, export.signature)
    pipeline = beam.Pipeline(runner=runner, options=options)
    build(pipeline, request, export, matched)
    result = pipeline.run()
    result.wait_until_finish()
    with FileSystems.open(f"{request.output}summary.json") as f:
        summary = json.loads(f.read().decode("utf-8"))
    summary["worker_peak_memory_mb"] = worker_peak_memory(result)
    return summary


def worker_peak_memory(result) -> dict:
    """Process id -> peak resident MB of each process that scored files, from the gauges
    SplitResults sets (empty where the runner reports no metrics)."""
    from apache_beam.metrics.metric import MetricsFilter
    try:
        gauges = result.metrics().query(MetricsFilter().with_namespace("ic_anogan"))["gauges"]
    except Exception:  # noqa: BLE001 - metrics are optional on some runners
        return {}
    prefix = "peak_memory_mb.pid"
    return {gauge.key.metric.name[len(prefix):]: gauge.committed.value
            for gauge in gauges if gauge.key.metric.name.startswith(prefix)}
