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

_SAVED_MODEL = flags.DEFINE_string(
    "saved_model", None, "An export: a version folder (EXPORT_DIR/<version>), or the export base, "
    "which scores with its newest version. Local, or a path Beam's file systems read (gs://...).")
_INPUT_PATTERN = flags.DEFINE_multi_string(
    "input_pattern", None, "Glob of the image files to score (PNG, JPEG, BMP, GIF), read "
    "through Beam's file systems; repeat the flag for several.")
_OUTPUT = flags.DEFINE_string(
    "output", None, "Path prefix of the outputs, e.g. out/run1/ or gs://bucket/run1/; an "
    "existing folder given without its trailing slash is taken as that folder.")
_MODE = flags.DEFINE_string("mode", None, "A mode baked into the export; default: its default "
                            "mode (the one serving_default serves).")
_WRITE_MASKS = flags.DEFINE_bool("write_masks", False, "Write each anomalous file's defect mask "
                                 "and overlay as PNGs under OUTPUTmasks/.")
_MIN_BATCH_SIZE = flags.DEFINE_integer("min_batch_size", 1, "Fewest files per signature call.",
                                       lower_bound=1)
_MAX_BATCH_SIZE = flags.DEFINE_integer("max_batch_size", 32, "Most files per signature call.",
                                       lower_bound=1)
_MAX_FILE_BYTES = flags.DEFINE_integer("max_file_bytes", 64 * 1024 * 1024,
                                       "Larger files are refused before they are read.",
                                       lower_bound=1)
_MAX_IMAGE_PIXELS = flags.DEFINE_integer(
    "max_image_pixels", 100_000_000, "Images above this many pixels (width x height, from the "
    "header) are refused before they are decoded.", lower_bound=1)
_TF_THREADS = flags.DEFINE_integer(
    "tf_threads", None, "TensorFlow threads per worker process; 0: TensorFlow's own choice "
    "(one per core). Default: the cores divided by --direct_num_workers with "
    "--direct_running_mode=multi_processing, else TensorFlow's own.", lower_bound=0)
_LARGE_MODEL = flags.DEFINE_bool(
    "large_model", False, "Load the model once per machine and share it between worker "
    "processes (Beam's shared-model proxy) instead of once per process.")

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
    from ic_anogan.jobs import bulk_score
    from ic_anogan.jobs.score_request import UsageRefusal
    request = bulk_score.BulkRequest(
        saved_model=_SAVED_MODEL.value, input_patterns=tuple(_INPUT_PATTERN.value),
        output=_OUTPUT.value, mode=_MODE.value, write_masks=_WRITE_MASKS.value,
        min_batch_size=_MIN_BATCH_SIZE.value, max_batch_size=_MAX_BATCH_SIZE.value,
        max_file_bytes=_MAX_FILE_BYTES.value, max_image_pixels=_MAX_IMAGE_PIXELS.value,
        tf_threads=(_threads_per_worker(beam_args) if _TF_THREADS.value is None
                    else _TF_THREADS.value) or None,
        large_model=_LARGE_MODEL.value)
    try:
        plan = bulk_score.check(request)
    except UsageRefusal as e:
        raise app.UsageError(str(e)) from None
    from ic_anogan.cli import common
    common.setup_logging()
    common.log_runtime()
    result = bulk_score.run(plan, beam_args)
    duplicates = (f" ({result['duplicates']} listed twice, scored once)"
                  if result["duplicates"] else "")
    print(f"scored {result['scored']} of {result['files_matched']} files{duplicates} with mode "
          f"{result['mode']} ({result['anomalies']} anomalous), refused {result['refused']}; "
          f"{plan.output}scores-*.csv, {plan.output}errors-*.txt, {plan.output}summary.json")
    peaks = result["worker_peak_memory_mb"]
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
    common.run_command(main, flags_parser=_parse_known_flags)


if __name__ == "__main__":
    run()
