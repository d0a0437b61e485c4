"""Bulk scoring on Apache Beam: the exported model over a folder of stored files."""

import csv
import glob
import io
import json
import os
import shutil
import zlib

import numpy as np
import pytest
from conftest import export_from_before_the_map_scores, run_main, write_image
from PIL import Image

from ic_anogan.jobs import bulk_score, bulk_transforms
from ic_anogan.jobs.score_request import RequestError

GOOD_PNG = 24
BAD = {"truncated.png": "the export could not score it: Invalid PNG data",
       "notes.png": "not a PNG, JPEG, BMP or GIF file"}
FLOAT_COLUMNS = ("anomaly_score", "residual_score", "discrimination_score", "map_score")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """30 stored files: 24 PNG, a JPEG, a BMP ending in NUL bytes, a 16-bit PNG, a colour
    JPEG of another size, a truncated PNG and a text file named .png."""
    folder = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(7)
    for i in range(GOOD_PNG):
        write_image(str(folder / f"part_{i:02d}.png"),
                    rng.integers(40, 200, (16, 16), dtype=np.uint8))
    write_image(str(folder / "gray.jpg"), rng.integers(0, 255, (16, 16), dtype=np.uint8),
                quality=95)
    # BMP rows are stored bottom-up: a black top row puts NUL bytes at the file's end.
    pixels = rng.integers(1, 255, (16, 16), dtype=np.uint8)
    pixels[0] = 0
    write_image(str(folder / "nul_tail.bmp"), pixels)
    assert (folder / "nul_tail.bmp").read_bytes().endswith(b"\x00" * 16)
    Image.fromarray(rng.integers(0, 65535, (16, 16)).astype(np.uint16)).save(
        folder / "deep.png")
    write_image(str(folder / "colour.jpg"), rng.integers(0, 255, (24, 20, 3), dtype=np.uint8))
    good = (folder / "part_00.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[:len(good) // 2])
    (folder / "notes.png").write_text("inspection notes, not an image\n")
    return folder


def _run(export_path, archive, output, mode=None, beam_args=(), patterns=None, **request):
    request = bulk_score.BulkRequest(saved_model=export_path,
                                     input_patterns=patterns or (str(archive / "*"),),
                                     output=str(output), mode=mode, max_batch_size=8, **request)
    summary = bulk_score.run(bulk_score.check(request), beam_args)
    output = f"{output}/" if os.path.isdir(str(output)) else output
    rows = {}
    for shard in sorted(glob.glob(f"{output}scores-*.csv")):
        lines = open(shard).read().splitlines()
        assert lines[0] == ",".join(bulk_score.COLUMNS)
        for row in csv.DictReader(io.StringIO("\n".join(lines))):
            rows[os.path.basename(row["path"])] = row
    errors = dict(line.split("\t", 1) for shard in glob.glob(f"{output}errors-*.txt")
                  for line in open(shard).read().splitlines())
    return summary, rows, {os.path.basename(path): reason for path, reason in errors.items()}


def _direct(loaded, signature, path):
    """The export's signature called on one file, as a TF Serving client would."""
    import tensorflow as tf
    outputs = loaded.signatures[signature](image_bytes=tf.constant([open(path, "rb").read()]))
    return {name: value.numpy()[0] for name, value in outputs.items()}


def _assert_rows_match(rows, expected):
    assert set(rows) == set(expected)
    for name, row in rows.items():
        for column in FLOAT_COLUMNS:
            np.testing.assert_allclose(float(row[column]), float(expected[name][column]),
                                       rtol=1e-4, atol=1e-4, err_msg=(name, column))
        for column in ("is_anomaly", "map_x", "map_y"):
            assert row[column] == expected[name][column], (name, column)


@pytest.fixture(scope="module")
def in_process(exported_modes, archive, tmp_path_factory):
    output = tmp_path_factory.mktemp("bulk") / "run1_"
    return _run(exported_modes["path"], archive, output, write_masks=True), output


def test_every_file_is_scored_as_the_signature_scores_it_or_named_with_why(
        in_process, exported_modes, archive):
    (summary, rows, errors), output = in_process
    assert summary.mode == "encoder_search" and summary.signature == "encoder_search_encoded"
    good = sorted(p.name for p in archive.iterdir() if p.name not in BAD)
    assert sorted(rows) == good and len(good) == 28
    expected = {}
    for name in good:
        served = _direct(exported_modes["loaded"], "encoder_search_encoded", archive / name)
        expected[name] = {"anomaly_score": served["anomaly_score"],
                          "residual_score": served["residual_score"],
                          "discrimination_score": served["discrimination_score"],
                          "map_score": served["map_score"],
                          "is_anomaly": str(int(served["is_anomaly"])),
                          "map_x": str(served["map_x"]), "map_y": str(served["map_y"])}
    # Batches of 1 to 8 files against single calls: the documented batch-composition
    # tolerance (docs/deployment.md, "Batch size and exact scores").
    _assert_rows_match(rows, expected)
    assert set(errors) == set(BAD)
    for name, reason in BAD.items():
        assert errors[name].startswith(reason), errors[name]
    assert summary.files_matched == 30 == summary.scored + summary.refused
    assert summary.refused == 2
    anomalies = sum(row["is_anomaly"] == "1" for row in rows.values())
    assert summary.anomalies == anomalies
    decision = sorted(float(row["map_score"]) for row in rows.values())
    assert summary.decision_score_quantiles["0.5"] == pytest.approx(np.median(decision),
                                                                         rel=1e-5)
    assert summary.export_settings["mode"] == "encoder_search"
    # The summary names the map settings, not the per-pixel statistics they produced.
    for record in summary.export_settings["modes"].values():
        if "map" in record:
            assert "config" in record["map"] and "pixel_threshold" in record["map"]
            assert not {"mean", "std", "references"} & set(record["map"])
    assert os.path.getsize(f"{output}summary.json") < 20_000
    # The typed result is summary.json, with each scoring process's peak memory beside it.
    written = json.load(open(f"{output}summary.json"))
    assert {**written, "worker_peak_memory_mb": summary.worker_peak_memory_mb} == \
        summary.to_dict()
    masks = sorted(os.listdir(f"{output}masks"))
    assert len(masks) == 2 * anomalies
    for name in (n for n, row in rows.items() if row["is_anomaly"] == "1"):
        for kind in ("mask", "overlay"):
            with Image.open(f"{output}masks/{name}_{kind}.png") as image:
                assert image.size == (64, 64)


def test_two_worker_processes_give_the_same_rows(in_process, exported_modes, archive,
                                                  tmp_path):
    """Two SDK worker processes, and the model shared between them behind Beam's proxy."""
    (_, expected, errors), _ = in_process
    summary, rows, errors_now = _run(
        exported_modes["path"], archive, tmp_path / "two_", large_model=True, tf_threads=1,
        beam_args=["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    _assert_rows_match(rows, expected)
    assert errors_now == errors and summary.scored == 28


def test_an_export_from_before_the_map_scores_decides_by_study(exported, archive, tmp_path):
    # The search mode with its study threshold, as exported before the map scores.
    export_from_before_the_map_scores(exported["path"], str(tmp_path / "old" / "1"))
    summary, rows, errors = _run(str(tmp_path / "old"), archive, tmp_path / "old_")
    assert summary.decided_by == "study" and summary.decision_score == "anomaly_score"
    assert len(rows) == 28 and set(errors) == set(BAD)
    for row in rows.values():
        assert row["map_score"] == row["map_x"] == row["map_y"] == ""
        assert row["is_anomaly"] == str(int(float(row["anomaly_score"]) > exported["threshold"]))


def test_refused_by_name_before_any_work(exported_modes, archive, tmp_path):
    cases = [
        (dict(input_patterns=(str(tmp_path / "none" / "*.png"),)),
         f"bulk.input_patterns={tmp_path / 'none' / '*.png'}: no file matches"),
        (dict(saved_model=str(archive)), f"bulk.saved_model={archive}: not an export"),
        (dict(input_patterns=(str(archive),)), f"bulk.input_patterns={archive}: a folder; give "
                                               f"a glob of its files, such as {archive}/*.png"),
        (dict(saved_model=exported_modes["search_only"], mode="encoder"),
         "bulk.mode=encoder: this export serves search"),
        (dict(output=str(archive / "notes.png" / "out_")), "bulk.output="),
        (dict(min_batch_size=9, max_batch_size=8), "bulk.min_batch_size=9, bulk.max_batch_size=8"),
        (dict(saved_model=exported_modes["search_only"], write_masks=True),
         "bulk.write_masks: mode search of this export has no good-part map statistics"),
    ]
    for fields, message in cases:
        request = bulk_score.BulkRequest(**{
            "saved_model": exported_modes["path"], "input_patterns": (str(archive / "*"),),
            "output": str(tmp_path / "out_"), **fields})
        with pytest.raises(RequestError, match=None) as refused:
            bulk_score.check(request)
        assert str(refused.value).startswith(message), (fields, str(refused.value))
    assert not list(tmp_path.glob("out_*"))
    # The command says it as one usage line, before TensorFlow or Beam's pipeline starts.
    done = run_main("bulk_score_main.py", f"--saved_model={exported_modes['path']}",
                    f"--input_pattern={tmp_path / 'none' / '*.png'}",
                    f"--output={tmp_path / 'out_'}")
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"--input_pattern={tmp_path / 'none' / '*.png'}: no file matches" in done.stderr
    assert "oneDNN" not in done.stderr and "Traceback" not in done.stderr


def test_a_batch_that_fails_outside_the_graph_names_each_of_its_files():
    """RunInference's dead letter of a failed batch becomes one errors line per file."""
    batch = [("/a/1.png", b"x"), ("/a/2.png", b"y")]
    failure = (batch, ("RuntimeError", "worker ran out of memory\nmore", ["traceback"]))
    assert bulk_transforms.failed_batch_errors(failure) == [
        ("/a/1.png", "scoring its batch failed (RuntimeError: worker ran out of memory)"),
        ("/a/2.png", "scoring its batch failed (RuntimeError: worker ran out of memory)")]
    assert bulk_transforms.failed_batch_errors((batch[:1], ValueError("bad"))) == [
        ("/a/1.png", "scoring its batch failed (ValueError: bad)")]


def test_screening_names_what_it_refuses(tmp_path):
    """Empty, oversized and non-image files, and a header over the pixel limit (a PNG of
    20000 x 20000 pixels in a few kilobytes), are refused before the model sees them."""
    def png_header(width, height):
        def chunk(kind, body):
            return (len(body).to_bytes(4, "big") + kind + body
                    + zlib.crc32(kind + body).to_bytes(4, "big"))
        header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")

    screen = bulk_transforms.Screen(max_file_bytes=1000, max_image_pixels=100_000_000)
    cases = {"empty.png": (b"", "empty file"),
             "big.bmp": (b"BM" + b"\0" * 2000, "2002 bytes, more than the limit of 1000"),
             "scan.tif": (b"II*\0" + b"\0" * 100, "not a PNG, JPEG, BMP or GIF file"),
             "bomb.png": (png_header(20000, 20000),
                          "400000000 pixels, more than the limit of 100000000"),
             "garbage.png": (b"\x89PNG\r\n\x1a\n" + b"\1" * 40, "not a decodable image")}
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        (output,) = list(screen.process(str(tmp_path / name)))
        assert output.tag == "errors" and output.value[0].endswith(name), name
        assert output.value[1].startswith(reason), (name, output.value[1])
    good = png_header(16, 16)
    (tmp_path / "ok.png").write_bytes(good)
    assert list(screen.process(str(tmp_path / "ok.png"))) == [(str(tmp_path / "ok.png"), good)]
    # A file named like a glob reads as itself.
    (tmp_path / "part[1].png").write_bytes(good)
    assert list(screen.process(str(tmp_path / "part[1].png")))[0][1] == good


def test_a_file_that_cannot_be_read_is_named_with_why(tmp_path, monkeypatch):
    """Permissions (root reads everything, so the refusal is simulated where it surfaces)."""
    (tmp_path / "locked.png").write_bytes(b"\x89PNG\r\n\x1a\n")

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(bulk_transforms.FileSystems, "open", refuse)
    (output,) = list(bulk_transforms.Screen(1000, 1000).process(str(tmp_path / "locked.png")))
    assert output.tag == "errors"
    assert output.value[1] == "cannot be read (PermissionError: Permission denied)"


def test_mask_names_are_as_distinct_as_the_paths():
    paths = ["/data/a b/part.png", "/data/a_b/part.png", "/data/x/y/part.png"]
    root = bulk_transforms.common_root(paths)
    assert root == "/data"
    names = [bulk_transforms.relative_path(p, root) for p in paths]
    assert names == ["a b/part.png", "a_b/part.png", "x/y/part.png"]
    assert bulk_transforms.common_root(["gs://b/run/1.png", "gs://b/run2/2.png"]) == "gs://b"
    assert bulk_transforms.relative_path("gs://b/run/1.png", "gs://b") == "run/1.png"
    assert bulk_transforms.common_root(["/data/one.png"]) == "/data"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A folder mixing good files with everything that used to vanish or end the job."""
    folder = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(3)
    for name in ("good1.png", "good2.png", "a b/part.png", "a_b/part.png"):
        (folder / name).parent.mkdir(exist_ok=True)
        write_image(str(folder / name), rng.integers(0, 256, (16, 16), dtype=np.uint8))
    (folder / "folder.png").mkdir()
    os.symlink(str(folder / "missing.png"), folder / "dangling.png")
    os.symlink(str(folder / "loop.png"), folder / "loop.png")
    # A file even root cannot read: /proc/self/mem fails at offset 0 with an I/O error.
    os.symlink("/proc/self/mem", folder / "unreadable.png")
    return folder


def test_every_path_is_one_row_or_one_error_and_no_temp_folder_stays(exported_modes, hostile,
                                                                     tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    patterns = (str(hostile / "*"), str(hostile / "*.png"), str(hostile / "*" / "*.png"))
    # An existing folder given without its slash is that folder.
    summary, rows, errors = _run(exported_modes["path"], hostile, str(output),
                                 patterns=patterns, write_masks=True)
    assert (output / "summary.json").exists()
    assert summary.files_matched == 10 == summary.scored + summary.refused
    assert summary.duplicates == 6  # *.png lists 6 of *'s paths again
    assert errors == {"folder.png": "a folder, not a file",
                      "dangling.png": f"a symbolic link to a missing file "
                                      f"({hostile / 'missing.png'})",
                      "loop.png": "a symbolic link loop",
                      "unreadable.png": "cannot be read (OSError: Input/output error)",
                      "a b": "a folder, not a file", "a_b": "a folder, not a file"}
    assert sorted(rows) == ["good1.png", "good2.png", "part.png"]
    scored_paths = [row["path"] for row in _rows(output)]
    assert sorted(scored_paths) == sorted(str(hostile / n) for n in (
        "good1.png", "good2.png", "a b/part.png", "a_b/part.png"))
    for path in scored_paths:
        row = next(r for r in _rows(output) if r["path"] == path)
        mask = output / "masks" / f"{os.path.relpath(path, hostile)}_mask.png"
        assert mask.exists() == (row["is_anomaly"] == "1"), path
    assert not list(output.glob("beam-temp-*"))


def _rows(output):
    rows = []
    for shard in sorted(glob.glob(f"{output}/scores-*.csv")):
        rows += list(csv.DictReader(open(shard)))
    return rows


def test_a_failed_run_leaves_no_temp_folder(exported_modes, archive, tmp_path, monkeypatch):
    def fail(*args):
        raise RuntimeError("disk full")
    monkeypatch.setattr(bulk_score, "csv_line", fail)
    with pytest.raises(Exception, match="disk full"):
        _run(exported_modes["path"], archive, tmp_path / "run_")
    assert not list(tmp_path.glob("beam-temp-*"))


def test_a_damaged_export_is_refused_before_the_pipeline(exported_modes, archive, tmp_path):
    damaged = tmp_path / "damaged" / "1"
    shutil.copytree(exported_modes["path"], damaged)
    pb = damaged / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:len(pb.read_bytes()) // 3])
    request = bulk_score.BulkRequest(saved_model=str(damaged),
                                     input_patterns=(str(archive / "*"),),
                                     output=str(tmp_path / "out_"))
    with pytest.raises(RequestError, match=f"bulk.saved_model={damaged}: a damaged export at "
                       f"{damaged}: saved_model.pb does not parse"):
        bulk_score.check(request)
    shutil.copytree(exported_modes["path"], damaged, dirs_exist_ok=True)
    shutil.rmtree(damaged / "variables")
    with pytest.raises(RequestError, match="variables/variables.index is missing"):
        bulk_score.check(request)


@pytest.mark.parametrize("flag, message", [
    ((), "--saved_model"), (("--max_batch_size=abc",), "--max_batch_size"),
    (("--tf_threads=-1",), "--tf_threads")])
def test_flag_errors_are_one_usage_line(exported_modes, archive, tmp_path, flag, message):
    required = [f"--saved_model={exported_modes['path']}",
                f"--input_pattern={archive / '*'}", f"--output={tmp_path / 'out_'}"]
    if not flag:
        required = required[1:]
    done = run_main("bulk_score_main.py", *required, *flag)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Check failed" not in done.stderr
    assert "FATAL Flags parsing error" in done.stderr and message in done.stderr
    assert not list(tmp_path.glob("out_*"))
