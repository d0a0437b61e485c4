"""Bulk scoring on Apache Beam: an export over every stored file a glob matches.

The pipeline scores with the exported SavedModel, so the artefact scored in
bulk is the one TF Serving serves: the same signatures, thresholds and
`is_anomaly`. It runs in process by default and on Flink, Spark or Dataflow
with their pipeline options (docs/deployment.md):

  list globs (every path once, duplicates counted)
    -> read each path as bytes (a folder, a dangling link or a loop, unreadable,
       empty, too large, not a PNG/JPEG/BMP/GIF: to `errors`)
    -> RunInference(score_encoded or M_encoded)   (a failed batch is retried
                                                   file by file: to `errors`)
    -> OUTPUT/scores-*.csv          scores.csv's columns, without labels
       OUTPUT/errors-*.txt          path <TAB> reason, one line per refused file
       OUTPUT/summary.json          counts, anomalies, score quantiles, the export's settings
       OUTPUT/masks/                with write_masks: each anomalous file's mask and
                                    overlay, at its path below the inputs' common folder

One bad file never ends the job: it is counted and named, and scoring goes on.
Every path the globs list ends as exactly one row or one error line, so
files_matched = scored + refused by construction. OUTPUT is a path prefix; an
existing folder given without its trailing slash is taken as that folder.
Whatever ends a run, Beam's temporary folders beside the outputs are removed.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import shutil
from typing import Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from ic_anogan.config import DEFAULT_MAX_IMAGE_PIXELS, map_score_name
from ic_anogan.core import atomic_io
from ic_anogan.jobs.bulk_inputs import Inputs, list_inputs, output_prefix, resolve_export
from ic_anogan.jobs.bulk_transforms import (COLUMNS, Export, Screen, SplitResults, Summarise,
                                            WriteMasks, csv_line, failed_batch_errors,
                                            summary_json)
from ic_anogan.jobs.score_request import RequestError
from ic_anogan.serving import beam_handler

log = logging.getLogger(__name__)

# Files larger than this are refused before they are read into a worker's memory.
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class BulkRequest:
    """What a bulk run is asked to do; checked by `check` before any work. Its settings'
    field paths are `bulk.<field>`."""

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


@dataclasses.dataclass(frozen=True)
class BulkPlan:
    """A checked request: the export, the inputs and where the outputs go."""

    request: BulkRequest
    export: Export
    inputs: Inputs
    # The output prefix as written to: an existing folder gets its trailing slash.
    output: str


def check(request: BulkRequest) -> BulkPlan:
    """Refuses a request by name before any work, and lists its inputs.

    Raises:
      RequestError: no file matches; the saved model is not an export, or a damaged one;
      the mode is not in it; the output cannot be written; a batch size or limit out of
      range.
    """
    if not 1 <= request.min_batch_size <= request.max_batch_size:
        raise RequestError(("bulk.min_batch_size", "bulk.max_batch_size"),
                           "expected 1 <= min <= max",
                           values=(request.min_batch_size, request.max_batch_size))
    for field in ("max_file_bytes", "max_image_pixels"):
        value = getattr(request, field)
        if value <= 0:
            raise RequestError(f"bulk.{field}", "expected a positive integer", value)
    if request.tf_threads is not None and request.tf_threads < 0:
        raise RequestError("bulk.tf_threads", "expected an integer >= 0", request.tf_threads)
    if not request.input_patterns:
        raise RequestError("bulk.input_patterns", "expected one or more globs")
    inputs = list_inputs(request.input_patterns)
    output = output_prefix(request.output)
    if "://" not in output:  # local: checked here; remote: by the first write
        folder = os.path.dirname(os.path.abspath(output)) if not output.endswith(os.sep) \
            else os.path.abspath(output)
        reason = atomic_io.unwritable_reason(folder)
        if reason:
            raise RequestError("bulk.output", reason, request.output)
    # Last: parsing the export's graph loads TensorFlow.
    export = resolve_export(request.saved_model, request.mode)
    if request.write_masks and not export.has_maps:
        raise RequestError("bulk.write_masks", f"mode {export.mode} of this export has no "
                           "good-part map statistics, so no defect masks; export a mode "
                           "calibrated with them, or write no masks")
    return BulkPlan(request, export, inputs, output)


def build(pipeline: beam.Pipeline, plan: BulkPlan) -> None:
    """Adds the bulk-scoring transforms to `pipeline` (module doc)."""
    request, export, output = plan.request, plan.export, plan.output
    files = (pipeline
             | "Paths" >> beam.Create(list(plan.inputs.paths))
             # Spreading the listed paths lets the runner give each worker its share
             # (without it one worker scored them all).
             | "Spread" >> beam.Reshuffle())
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
     | "WriteScores" >> beam.io.WriteToText(f"{output}scores", file_name_suffix=".csv",
                                            header=",".join(COLUMNS)))
    failed_batches = failures.failed_inferences | "FailedBatches" >> beam.FlatMap(
        failed_batch_errors)
    errors = ((screened[Screen.ERRORS], results[SplitResults.ERRORS], failed_batches)
              | "Errors" >> beam.Flatten())
    (errors
     | "ErrorLines" >> beam.MapTuple(lambda path, reason: f"{path}\t{reason}")
     | "WriteErrors" >> beam.io.WriteToText(f"{output}errors", file_name_suffix=".txt"))
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
                             beam.pvalue.AsSingleton(refused), export, len(plan.inputs.paths),
                             plan.inputs.duplicates)
     | "WriteSummary" >> beam.io.WriteToText(f"{output}summary.json", num_shards=1,
                                             shard_name_template=""))
    if request.write_masks:
        size = int(export.settings["model"]["image_size"])
        (scored
         | "Anomalous" >> beam.Filter(lambda element: bool(element[2]["is_anomaly"]))
         | "WriteMasks" >> beam.ParDo(WriteMasks(f"{output}masks", size, plan.inputs.root)))


def pipeline_options(beam_args: Sequence[str]):
    """Beam's options from its command-line arguments; (runner, options). Without a runner
    option the pipeline runs in process on Beam's FnApiRunner, which needs no download
    (the DirectRunner first tries to fetch its Prism runner)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    options = PipelineOptions(list(beam_args))
    if options.view_as(StandardOptions).runner is not None:
        return None, options
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    return FnApiRunner(), options


@dataclasses.dataclass(frozen=True)
class BulkResult:
    """What a bulk run did: summary.json's figures, and the scoring processes' peak memory.

    Attributes:
      files_matched: paths the globs listed, each once; `duplicates` the further
        times one was listed.
      scored, refused, anomalies: files scored, refused (errors-*.txt says why),
        and judged anomalous.
      mode, signature, saved_model: what scored them.
      decided_by, decision_score: the image score that decides and its column.
      decision_score_quantiles, anomaly_score_quantiles: quantile -> score.
      export_settings: the export's settings, named (without their arrays).
      worker_peak_memory_mb: pid -> peak resident memory of each scoring process.
    """

    files_matched: int
    scored: int
    refused: int
    duplicates: int
    anomalies: int
    mode: str
    signature: str
    saved_model: str
    decided_by: str
    decision_score: str
    decision_score_quantiles: dict
    anomaly_score_quantiles: dict
    export_settings: dict
    worker_peak_memory_mb: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_summary(cls, summary: dict, worker_peak_memory_mb: dict) -> "BulkResult":
        """From summary.json's content (keys of newer versions are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in summary.items() if k in names},
                   worker_peak_memory_mb=dict(worker_peak_memory_mb))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def run(plan: BulkPlan, beam_args: Sequence[str] = ()) -> BulkResult:
    """Runs the pipeline to completion and returns what it did (summary.json's figures).
    Beam's temporary folders beside the outputs are removed whether the run ends well or
    not.
    """
    runner, options = pipeline_options(beam_args)
    request, export = plan.request, plan.export
    log.info("scoring %d files listed by %s with %s (mode %s, signature %s)",
             len(plan.inputs.paths), ", ".join(request.input_patterns), export.path,
             export.mode, export.signature)
    if plan.inputs.duplicates:
        log.info("%d paths were listed by more than one glob and are scored once",
                 plan.inputs.duplicates)
    before = _temporary_folders(plan.output)
    try:
        pipeline = beam.Pipeline(runner=runner, options=options)
        build(pipeline, plan)
        result = pipeline.run()
        result.wait_until_finish()
    finally:
        for folder in _temporary_folders(plan.output) - before:
            shutil.rmtree(folder, ignore_errors=True)
    with FileSystems.open(f"{plan.output}summary.json") as f:
        summary = json.loads(f.read().decode("utf-8"))
    return BulkResult.from_summary(summary, worker_peak_memory(result))


def _temporary_folders(output: str) -> set:
    """Beam's beam-temp-* folders where the outputs go (local outputs only)."""
    if "://" in output:
        return set()
    folder = output if output.endswith(os.sep) else os.path.dirname(os.path.abspath(output))
    return set(glob.glob(os.path.join(folder or ".", "beam-temp-*")))


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
