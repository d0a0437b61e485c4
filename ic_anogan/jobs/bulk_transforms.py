"""The steps of bulk scoring, which bulk_score.py puts together into a pipeline.

Screening files, splitting results from errors, CSV rows, the summary and the mask
files."""

from __future__ import annotations

import csv
import dataclasses
import errno
import io
import json
import os
from typing import Optional

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from ic_anogan.config import ImageScore
from ic_anogan.scoring.outputs import CSV_COLUMNS
from ic_anogan.serving import beam_handler
from ic_anogan.serving.signatures import GRAPH_DECODABLE_MAGIC, settings_summary

# scores.csv's columns without the label columns, which stored files do not have.
COLUMNS = tuple(c for c in CSV_COLUMNS if c not in ("label", "defect_type"))
QUANTILES = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


@dataclasses.dataclass(frozen=True)
class Export:
    """The export a bulk run scores with: its version folder, mode, signature and settings."""

    path: str
    mode: str
    signature: str
    settings: dict
    image_score: str
    has_maps: bool


class Screen(beam.DoFn):
    """Reads each listed path and refuses, by name, what the graph cannot score: paths that
    cannot be read (a folder, a dangling symbolic link or a loop, no permission), empty
    files, files over the size or pixel limits, and files that are not PNG, JPEG, BMP or
    GIF. Every path leaves as exactly one file or one error."""

    ERRORS = "errors"

    def __init__(self, max_file_bytes: int, max_image_pixels: int):
        self.max_file_bytes, self.max_image_pixels = max_file_bytes, max_image_pixels

    def process(self, path: str):
        data, reason = read_file(path, self.max_file_bytes)
        if reason:
            yield beam.pvalue.TaggedOutput(self.ERRORS, (path, reason))
            return
        if not data:
            yield beam.pvalue.TaggedOutput(self.ERRORS, (path, "empty file"))
            return
        if not data.startswith(GRAPH_DECODABLE_MAGIC):
            yield beam.pvalue.TaggedOutput(self.ERRORS, (
                path, "not a PNG, JPEG, BMP or GIF file (convert TIFF and other formats, or "
                      "score them with the export in process, which reads them)"))
            return
        pixels = _pixel_count(data)
        if pixels is None:
            yield beam.pvalue.TaggedOutput(self.ERRORS, (path, "not a decodable image"))
        elif pixels > self.max_image_pixels:
            yield beam.pvalue.TaggedOutput(self.ERRORS, (
                path, f"{pixels} pixels, more than the limit of {self.max_image_pixels}"))
        else:
            yield path, data


def read_file(path: str, max_file_bytes: int) -> tuple:
    """(bytes, None), or (None, why it cannot be read) for a path of any file system."""
    if "://" not in path:
        if os.path.islink(path) and not os.path.exists(path):
            try:
                os.stat(path)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    return None, "a symbolic link loop"
            return None, f"a symbolic link to a missing file ({os.readlink(path)})"
        if os.path.isdir(path):
            return None, "a folder, not a file"
    try:  # a local path is not a glob: `part[1].png` names itself
        size = (os.path.getsize(path) if "://" not in path
                else FileSystems.match([path])[0].metadata_list[0].size_in_bytes)
    except Exception:  # noqa: BLE001 - a path a file system lists but cannot stat
        size = None
    if size is not None and size > max_file_bytes:
        return None, f"{size} bytes, more than the limit of {max_file_bytes}"
    try:
        with FileSystems.open(path) as f:
            data = f.read(max_file_bytes + 1)
    except Exception as e:  # noqa: BLE001 - any reason a file cannot be read is the file's
        cause = getattr(e, "__cause__", None) or e
        return None, f"cannot be read ({type(cause).__name__}: {_first_line(cause)})"
    if len(data) > max_file_bytes:
        return None, f"more than the limit of {max_file_bytes} bytes"
    return data, None


def _first_line(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return (str(text).strip().splitlines() or [""])[0][:200]


def _pixel_count(data: bytes) -> Optional[int]:
    """Width x height from the header alone (Pillow reads no pixels here), or None."""
    from PIL import Image

    # Pillow refuses a header over its own pixel limit before saying the size; the
    # caller compares with its own pixel limit instead, so Pillow's limit is lifted here
    # (this worker decodes nothing larger: masks are drawn only for files that passed).
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width * image.height
    except Exception:  # noqa: BLE001 - Pillow raises many kinds on garbage
        return None


class SplitResults(beam.DoFn):
    """Results the graph could not score go to `errors`; the rest become score records."""

    ERRORS = "errors"

    def __init__(self, export: Export):
        self.export = export
        self.scored = Metrics.counter("ic_anogan", "scored_files")

    def process(self, element):
        path, result = element
        served = result.inference
        if beam_handler.ERROR_KEY in served:
            yield beam.pvalue.TaggedOutput(self.ERRORS, (path, served[beam_handler.ERROR_KEY]))
            return
        self.scored.inc()
        # Per process, so that a run on several workers reports each worker's peak.
        Metrics.gauge("ic_anogan", f"peak_memory_mb.pid{os.getpid()}").set(
            int(beam_handler.peak_memory_mb()))
        yield path, result.example, served


def failed_batch_errors(failure) -> list:
    """(path, reason) for every file of a batch RunInference's exception handling caught:
    its dead letter is (the batch of (path, bytes), (error type, message, traceback))."""
    batch, error = failure
    if isinstance(error, (tuple, list)) and len(error) >= 2:
        name, message = error[0], error[1]
        name = getattr(name, "__name__", str(name))
    else:
        name, message = type(error).__name__, str(error)
    first_line = (str(message).strip().splitlines() or [""])[0][:300]
    return [(path, f"scoring its batch failed ({name}: {first_line})") for path, _ in batch]


def csv_line(path: str, served: dict, has_maps: bool) -> str:
    """One scores.csv row (without labels), formatted as the score command writes it."""
    map_columns = ([f"{float(served['map_score']):.6f}", int(served["map_x"]),
                    int(served["map_y"])] if has_maps else ["", "", ""])
    values = {"path": path,
              "anomaly_score": f"{float(served['anomaly_score']):.6f}",
              "residual_score": f"{float(served['residual_score']):.6f}",
              "discrimination_score": f"{float(served['discrimination_score']):.6f}",
              "is_anomaly": int(bool(served["is_anomaly"])),
              "map_score": map_columns[0], "map_x": map_columns[1], "map_y": map_columns[2]}
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([values[c] for c in COLUMNS])
    return buffer.getvalue()


class Summarise(beam.CombineFn):
    """Counts, anomalies and the scores of every scored file, for the summary's quantiles.

    The scores are kept exactly (8 bytes per file: 8 MB per million files), so the
    quantiles are exact whatever the runner's bundling."""

    def create_accumulator(self):
        return {"scored": 0, "anomalies": 0, "decision": [], "anomaly_score": []}

    def add_input(self, accumulator, element):
        decision_score, anomaly_score, is_anomaly = element
        accumulator["scored"] += 1
        accumulator["anomalies"] += int(is_anomaly)
        accumulator["decision"].append(decision_score)
        accumulator["anomaly_score"].append(anomaly_score)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for accumulator in accumulators:
            for key in ("scored", "anomalies"):
                merged[key] += accumulator[key]
            for key in ("decision", "anomaly_score"):
                merged[key].extend(accumulator[key])
        return merged

    def extract_output(self, accumulator):
        def quantiles(values):
            if not values:
                return {}
            return {f"{q:g}": float(np.quantile(np.asarray(values), q)) for q in QUANTILES}
        return {"scored": accumulator["scored"], "anomalies": accumulator["anomalies"],
                "decision_score_quantiles": quantiles(accumulator["decision"]),
                "anomaly_score_quantiles": quantiles(accumulator["anomaly_score"])}


def summary_json(_, statistics: dict, refused: int, export: Export, matched: int,
                 duplicates: int = 0) -> str:
    """summary.json: what was scored and refused, and what scored it. `matched` counts
    each listed path once; `duplicates` the further times globs listed one."""
    record = {"files_matched": matched, "scored": statistics["scored"], "refused": refused,
              "duplicates": duplicates,
              "anomalies": statistics["anomalies"], "mode": export.mode,
              "signature": export.signature, "saved_model": export.path,
              "decided_by": export.image_score,
              "decision_score": ("map_score" if export.image_score != ImageScore.STUDY
                                 else "anomaly_score"),
              "decision_score_quantiles": statistics["decision_score_quantiles"],
              "anomaly_score_quantiles": statistics["anomaly_score_quantiles"],
              "export_settings": settings_summary(export.settings)}
    return json.dumps(record, indent=2, sort_keys=True)


class WriteMasks(beam.DoFn):
    """Each anomalous file's defect mask and overlay as PNGs under OUTPUT/masks/, at the
    file's path below `root` (the inputs' common folder), mirrored as folders: names
    are as distinct as the paths and as readable."""

    def __init__(self, folder: str, image_size: int, root: str):
        self.folder, self.image_size, self.root = folder, image_size, root

    def process(self, element):
        path, data, served = element
        from ic_anogan.reporting.overlays import mask_pngs
        stem = f"{self.folder}/{relative_path(path, self.root)}"
        if "://" not in stem:
            os.makedirs(os.path.dirname(stem), exist_ok=True)
        for suffix, png in zip(("mask", "overlay"), mask_pngs(data, served, self.image_size)):
            with FileSystems.create(f"{stem}_{suffix}.png") as f:
                f.write(png)
        yield path


def common_root(paths) -> str:
    """The deepest folder holding every path ('' for none), of any file system."""
    folders = [p.rsplit("/", 1)[0] if "/" in p else "" for p in paths]
    if not folders:
        return ""
    root = os.path.commonprefix(folders)
    if not all(f == root or f.startswith(root + "/") for f in folders):
        root = root.rsplit("/", 1)[0] if "/" in root else ""
    return root


def relative_path(path: str, root: str) -> str:
    """`path` below `root`, as written under masks/ (never climbing out of it)."""
    rest = path[len(root):] if root and path.startswith(root) else path.split("://")[-1]
    parts = [part for part in rest.split("/") if part not in ("", ".", "..")]
    return "/".join(parts)
