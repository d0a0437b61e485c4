"""Scores stored image files in bulk with an exported model, on Apache Beam.

    python bulk_score_main.py --saved_model=exports/line3 \\
        --input_pattern='/archive/2026-11/*.png' --output=out/2026-11/

Writes OUTPUTscores-*.csv (scores.csv's columns, without labels),
OUTPUTerrors-*.txt (each refused file and why), OUTPUTsummary.json and, with
--write_masks, OUTPUTmasks/. Every flag this command does not define is a
Beam pipeline option (--runner, --direct_num_workers, --direct_running_mode,
and the Flink, Spark and Dataflow options); without --runner the pipeline
runs in this process, with no download. Needs the `beam` extra:
pip install 'ic-anogan[beam]'. The work is ic_anogan.jobs.bulk_score's.
"""

import os
import sys

from absl import app, flags

from ic_anogan.cli import flag_table
from ic_anogan.cli.flag_table import Flag

ROWS = (
    Flag("input_pattern", "bulk.input_patterns", "data", kind="multi_string",
         help="Glob of the image files to score (PNG, JPEG, BMP, GIF), read through Beam's "
              "file systems; repeat the flag for several."),
    Flag("max_file_bytes", "bulk.max_file_bytes", "data", kind="integer",
         default=64 * 1024 * 1024, bounds={"lower_bound": 1},
         help="Larger files are refused before they are read."),
    Flag("max_image_pixels", "bulk.max_image_pixels", "data", kind="integer",
         default=100_000_000, bounds={"lower_bound": 1},
         help="Images above this many pixels (width x height, from the header) are refused "
              "before they are decoded."),
    Flag("saved_model", "bulk.saved_model", "model",
         help="An export: a version folder (EXPORT_DIR/<version>), or the export base, which "
              "scores with its newest version. Local, or a path Beam's file systems read "
              "(gs://...)."),
    Flag("mode", "bulk.mode", "search",
         help="A mode baked into the export; default: its default mode (the one "
              "serving_default serves)."),
    Flag("min_batch_size", "bulk.min_batch_size", "runtime", kind="integer", default=1,
         bounds={"lower_bound": 1}, help="Fewest files per signature call."),
    Flag("max_batch_size", "bulk.max_batch_size", "runtime", kind="integer", default=32,
         bounds={"lower_bound": 1}, help="Most files per signature call."),
    Flag("tf_threads", "bulk.tf_threads", "runtime", kind="integer", bounds={"lower_bound": 0},
         help="TensorFlow threads per worker process; 0: TensorFlow's own choice (one per "
              "core). Default: the cores divided by --direct_num_workers with "
              "--direct_running_mode=multi_processing, else TensorFlow's own."),
    Flag("large_model", "bulk.large_model", "runtime", kind="bool", default=False,
         help="Load the model once per machine and share it between worker processes "
              "(Beam's shared-model proxy) instead of once per process."),
    Flag("output", "bulk.output", "output",
         help="Path prefix of the outputs, e.g. out/run1/ or gs://bucket/run1/; an existing "
              "folder given without its trailing slash is taken as that folder."),
    Flag("write_masks", "bulk.write_masks", "output", kind="bool", default=False,
         help="Write each anomalous file's defect mask and overlay as PNGs under "
              "OUTPUTmasks/."),
)
FLAGS = flag_table.define(ROWS)
flags.mark_flags_as_required(["saved_model", "input_pattern", "output"])


def _threads_per_worker(beam_args: list) -> int:
    """Cores / workers when several worker processes share this machine, else 0 (default)."""
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
    direct = PipelineOptions(beam_args).view_as(DirectOptions)
    workers = direct.direct_num_workers or os.cpu_count() or 1
    if direct.direct_running_mode == "multi_processing" and workers > 1:
        return max(1, (os.cpu_count() or 1) // workers)
    return 0


def main(argv):
    beam_args = argv[1:]
    from ic_anogan import config
    from ic_anogan.jobs import bulk_score
    threads = FLAGS.value("tf_threads")
    request = bulk_score.BulkRequest(
        saved_model=FLAGS.value("saved_model"),
        input_patterns=tuple(FLAGS.value("input_pattern")), output=FLAGS.value("output"),
        mode=FLAGS.value("mode"), write_masks=FLAGS.value("write_masks"),
        min_batch_size=FLAGS.value("min_batch_size"),
        max_batch_size=FLAGS.value("max_batch_size"),
        max_file_bytes=FLAGS.value("max_file_bytes"),
        max_image_pixels=FLAGS.value("max_image_pixels"),
        tf_threads=(_threads_per_worker(beam_args) if threads is None else threads) or None,
        large_model=FLAGS.value("large_model"))
    try:
        plan = bulk_score.check(request)
    except config.SettingError as e:
        raise app.UsageError(flag_table.translate(e, FLAGS)) from None
    from ic_anogan.cli import common
    common.setup_logging()
    common.log_runtime()
    result = bulk_score.run(plan, beam_args)
    duplicates = (f" ({result.duplicates} listed twice, scored once)"
                  if result.duplicates else "")
    print(f"scored {result.scored} of {result.files_matched} files{duplicates} with mode "
          f"{result.mode} ({result.anomalies} anomalous), refused {result.refused}; "
          f"{plan.output}scores-*.csv, {plan.output}errors-*.txt, {plan.output}summary.json")
    peaks = result.worker_peak_memory_mb
    if peaks:
        print("peak memory of the scoring processes: " + ", ".join(
            f"pid {pid}: {mb} MB" for pid, mb in sorted(peaks.items())))
    return 0


def _parse_known_flags(argv: list) -> list:
    """This command's flags; everything else goes on to Beam as pipeline options. A bad or
    missing flag is one usage line naming it, as absl's own parser says it."""
    try:
        return flags.FLAGS(argv, known_only=True)
    except flags.Error as e:
        sys.stderr.write(f"FATAL Flags parsing error: {e}\n"
                         "Pass --helpshort or --helpfull to see help on flags.\n")
        sys.exit(1)


def run() -> None:
    """The `ic-anogan-bulk-score` command."""
    from ic_anogan.cli import common
    common.run_command(main, FLAGS, flags_parser=_parse_known_flags)


if __name__ == "__main__":
    run()
