"""A battery of bad inputs against both binaries and an export; prints how each ended.

    python benchmarks/bad_input_battery.py [--work_dir /tmp/ic_anogan_battery]

Trains a tiny model and exports it, then runs each case in a fresh process
(absl flags are process-global) or against the loaded export, and prints one
Markdown row per case: exit code, whether a Python traceback was printed,
whether anything was left behind where it should not be, and the last line
of the message. "ok" means: refused (non-zero exit) with a named message and
no traceback, or, for the cases that should succeed, exit 0. Not a test: the
tests check the important cases' exact messages; this checks breadth.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--image_size=16", "--latent_dim=8", "--base_filters=4", "--batch_size=8", "--epochs=1",
        "--synthetic_train_count=20", "--monitor_every_epochs=0", "--search_steps=2",
        "--encoder_epochs=1", "--encoder_search_steps=2"]


def _run(script, *args, env_changes=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    env.pop("TF_CONFIG", None)
    env.update(env_changes or {})
    done = subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stderr.splitlines() + done.stdout.splitlines()
             if line.strip() and not line.startswith(("W0", "I0", "WARNING: All log"))]
    # The refusal itself: an error log line, absl's flag error, or a usage
    # error's last line (after the printed help), not a line of the help.
    named = [line for line in lines if re.match(r"(E\d{4} |FATAL |--\w+=\S*: )", line)]
    message = named[-1] if named else (lines[-1] if lines else "")
    message = re.sub(r"^E\d{4} [\d:.]+ +\d+ ", "", message)
    return done.returncode, "Traceback" in done.stderr, message.strip()[:160]


def _png_bomb(path, side=15000):
    def chunk(kind, payload):
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0,
                                                                 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", default="/tmp/ic_anogan_battery")
    args = parser.parse_args()
    import numpy as np
    from PIL import Image

    work = args.work_dir
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    model = os.path.join(work, "model")
    # Two held-out images are too few for neighbour statistics by default; one neighbour
    # given keeps the reference maps in the record, which the damage cases need.
    code, _, message = _run("train_main.py", f"--model_dir={model}", f"--log_dir={work}/logs",
                            *TINY, "--map_neighbours=1")
    assert code == 0, message
    code, _, message = _run("score_main.py", f"--model_dir={model}", f"--export_dir={work}/serving",
                            "--mode=encoder")
    assert code == 0, message
    export = os.path.join(work, "serving", "1")

    rng = np.random.default_rng(0)
    folders = {}

    def folder(name, files):
        path = os.path.join(work, name)
        os.makedirs(path, exist_ok=True)
        for file_name, content in files.items():
            with open(os.path.join(path, file_name), "wb") as f:
                f.write(content)
        folders[name] = path
        return path

    def png(pixels):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        return buffer.getvalue()

    good_png = png(rng.integers(0, 256, (16, 16), dtype=np.uint8))
    tiff = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(tiff, format="TIFF")
    folder("corrupt", {"a.png": good_png, "b.png": b"not an image"})
    folder("truncated", {"a.png": good_png, "b.png": good_png[: len(good_png) // 2]})
    folder("empty", {})
    bomb_dir = folder("bomb", {"a.png": good_png})
    _png_bomb(os.path.join(bomb_dir, "b.png"))
    folder("tiffs", {"a.tif": tiff.getvalue(), "b.tif": tiff.getvalue()})
    folder("zero_bytes", {"a.png": b""})
    folder("text_named_png", {"a.png": b"hello"})
    idx_cut = folder("idx_cut", {"train-images-idx3-ubyte": struct.pack(">I", 0x803) + b"\0\0",
                                 "train-labels-idx1-ubyte": struct.pack(">II", 0x801, 0)})
    whole = gzip.compress(struct.pack(">IIII", 0x803, 1, 2, 2) + bytes(4))
    idx_gz = folder("idx_gz", {"train-images-idx3-ubyte.gz": whole[:12] + b"\xff" * 20 + whole[32:],
                               "train-labels-idx1-ubyte.gz": gzip.compress(
                                   struct.pack(">II", 0x801, 1) + b"\0")})
    a_file = os.path.join(work, "a_file")
    open(a_file, "w").close()

    def broken_model(name, change):
        path = os.path.join(work, name)
        shutil.copytree(model, path)
        change(path)
        return path

    def cut(path, file_name, keep=500):
        full = os.path.join(path, file_name)
        data = open(full, "rb").read()
        open(full, "wb").write(data[:keep])

    truncated_g = broken_model("m_trunc_g", lambda p: cut(p, "generator.weights.h5"))
    truncated_e = broken_model("m_trunc_e", lambda p: cut(p, "encoder.weights.h5"))
    config_list = broken_model("m_cfg_list", lambda p: open(f"{p}/config.json", "w").write("[]"))
    config_nomodel = broken_model("m_cfg_nomodel",
                                  lambda p: open(f"{p}/config.json", "w").write('{"train": {}}'))
    config_bad = broken_model("m_cfg_bad", lambda p: open(f"{p}/config.json", "w").write("{"))
    calib_bad = broken_model("m_calib_bad",
                             lambda p: open(f"{p}/calibration.json", "w").write("{"))

    def strip_maps(path):
        stored = json.load(open(f"{path}/calibration.json"))
        for record in stored["modes"].values():
            record.pop("map"), record.pop("image_scores")
        json.dump(stored, open(f"{path}/calibration.json", "w"))
    old = broken_model("m_old", strip_maps)
    no_pb = os.path.join(work, "no_pb", "1")
    os.makedirs(no_pb)

    # Damaged calibration records (issue "No silent wrong answers").
    def damage(change):
        def apply(path):
            stored = json.load(open(f"{path}/calibration.json"))
            change(stored["modes"])
            open(f"{path}/calibration.json", "w").write(json.dumps(stored))
        return apply

    def set_in(*keys, value):
        def change(modes):
            target = modes
            for key in keys[:-1]:
                target = target[key]
            target[keys[-1]] = value
        return change
    calibrations = {
        "NaN map_max threshold": set_in("encoder", "image_scores", "map_max", "threshold",
                                        value=float("nan")),
        "null map_max threshold": set_in("encoder", "image_scores", "map_max", "threshold",
                                         value=None),
        "string study threshold": set_in("encoder", "threshold", value="high"),
        "NaN pixel_threshold": set_in("encoder", "map", "pixel_threshold", value=float("nan")),
        "8x8 statistics for a 16 px model": lambda m: m["encoder"]["map"].update(
            mean=[[0.0] * 8] * 8, std=[[1.0] * 8] * 8),
        "zero std": lambda m: m["encoder"]["map"].update(std=[[0.0] * 16] * 16),
        "NaN mean": lambda m: m["encoder"]["map"]["mean"][3].__setitem__(3, float("nan")),
        "count 0": set_in("encoder", "map", "count", value=0),
        "references missing": lambda m: m["encoder"]["map"].pop("references"),
        "references not base64": set_in("encoder", "map", "references", "maps",
                                        "float32_base64", value="@@"),
        "search settings bad": set_in("encoder", "search", "discrimination_weight", value=7),
        "record under the wrong mode": lambda m: m.__setitem__("search", m.pop("encoder")),
        "unknown mode": lambda m: m.__setitem__("serch", m["encoder"]),
        "modes not an object": lambda m: m.clear() or m.update({"encoder": []}),
    }
    damaged = {name: broken_model(f"m_damaged_{i}", damage(change))
               for i, (name, change) in enumerate(calibrations.items())}
    labelled_root = folder("labelled_root/good", {f"{i}.png": png(rng.integers(
        0, 256, (16, 16), dtype=np.uint8)) for i in range(12)})
    labelled_root = os.path.dirname(labelled_root)
    folder("labelled_root/void", {"v.png": good_png})
    two_good = folder("two_good", {"a.png": good_png, "b.png": good_png})
    recal_model = broken_model("m_recal", lambda p: None)
    repair_model = broken_model("m_repair", damage(set_in(
        "encoder", "map", "pixel_threshold", value=float("nan"))))
    cluster_two = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                              "task": {"type": "worker", "index": 0}})

    t = ("train_main.py",)
    s = ("score_main.py",)
    fresh = lambda name: f"--model_dir={work}/new_{name}"  # noqa: E731
    cases = [
        # (name, script, args, should succeed, path that must not exist afterwards)
        ("beta_1=1.5", t, [fresh(1), "--beta_1=1.5"], False, f"{work}/new_1"),
        ("beta_1=-0.1", t, [fresh(2), "--beta_1=-0.1"], False, f"{work}/new_2"),
        ("learning_rate=inf", t, [fresh(3), "--learning_rate=inf"], False, f"{work}/new_3"),
        ("learning_rate=nan", t, [fresh(4), "--learning_rate=nan"], False, f"{work}/new_4"),
        ("learning_rate=0", t, [fresh(5), "--learning_rate=0"], False, f"{work}/new_5"),
        ("search_learning_rate=inf", t, [fresh(6), "--search_learning_rate=inf"], False, None),
        ("encoder_feature_weight=nan", t, [fresh(7), "--encoder_feature_weight=nan"], False, None),
        ("clip_z=inf", t, [fresh(8), "--clip_z=inf"], False, None),
        ("discrimination_weight=2", t, [fresh(9), "--discrimination_weight=2"], False, None),
        ("batch_size=0", t, [fresh(10), "--batch_size=0"], False, None),
        ("epochs=0", t, [fresh(11), "--epochs=0"], False, None),
        ("image_size=48", t, [fresh(12), "--image_size=48"], False, None),
        ("latent_dim=0", t, [fresh(13), "--latent_dim=0"], False, None),
        ("validation_fraction=1", t, [fresh(14), "--validation_fraction=1"], False, None),
        ("calibration_percentile=0", t, [fresh(15), "--calibration_percentile=0"], False, None),
        ("map_kernel_size=2", t, [fresh(16), "--map_kernel_size=2"], False, f"{work}/new_16"),
        ("pixel_percentile=101", t, [fresh(17), "--pixel_percentile=101"], False, None),
        ("max_image_pixels=0", t, [fresh(18), "--max_image_pixels=0"], False, None),
        ("model_dir is a file", t, [f"--model_dir={a_file}"], False, None),
        ("model_dir read-only (/proc)", t, ["--model_dir=/proc/battery"], False, None),
        ("log_dir is a file", t, [fresh(19), f"--log_dir={a_file}"], False, f"{work}/new_19"),
        ("data_dir missing", t, [fresh(20), f"--data_dir={work}/none"], False, f"{work}/new_20"),
        ("data_dir empty", t, [fresh(21), f"--data_dir={folders['empty']}"], False,
         f"{work}/new_21"),
        ("data_dir is a file", t, [fresh(22), f"--data_dir={a_file}"], False, f"{work}/new_22"),
        ("corrupt PNG", t, [fresh(23), f"--data_dir={folders['corrupt']}"], False,
         f"{work}/new_23"),
        ("truncated PNG", t, [fresh(24), f"--data_dir={folders['truncated']}"], False,
         f"{work}/new_24"),
        ("zero-byte PNG", t, [fresh(25), f"--data_dir={folders['zero_bytes']}"], False,
         f"{work}/new_25"),
        ("text named .png", t, [fresh(26), f"--data_dir={folders['text_named_png']}"], False,
         f"{work}/new_26"),
        ("decompression bomb", t, [fresh(27), f"--data_dir={folders['bomb']}"], False,
         f"{work}/new_27"),
        ("bomb with --skip_corrupt (one good image: too few)", t,
         [fresh(28), f"--data_dir={folders['bomb']}", "--skip_corrupt"], False, f"{work}/new_28"),
        ("IDX cut in header", t, [fresh(29), f"--data_dir=idx:{idx_cut}:0"], False,
         f"{work}/new_29"),
        ("IDX corrupt gzip", t, [fresh(30), f"--data_dir=idx:{idx_gz}:0"], False,
         f"{work}/new_30"),
        ("idx spec without class", t, [fresh(31), f"--data_dir=idx:{idx_gz}"], False,
         f"{work}/new_31"),
        ("score: model_dir missing", s, [f"--model_dir={work}/none"], False, None),
        ("score: truncated generator", s, [f"--model_dir={truncated_g}"], False, None),
        ("score: truncated encoder", s, [f"--model_dir={truncated_e}"], False, None),
        ("score: config.json []", s, [f"--model_dir={config_list}"], False, None),
        ("score: config.json without model", s, [f"--model_dir={config_nomodel}"], False, None),
        ("score: config.json not JSON", s, [f"--model_dir={config_bad}"], False, None),
        ("score: calibration.json not JSON", s, [f"--model_dir={calib_bad}"], False, None),
        ("score: output_dir is a file", s, [f"--model_dir={model}", f"--output_dir={a_file}"],
         False, None),
        ("score: output_dir read-only", s, [f"--model_dir={model}", "--output_dir=/proc/out"],
         False, None),
        ("score: export_dir is a file", s, [f"--model_dir={model}", f"--export_dir={a_file}"],
         False, None),
        ("score: threshold=abc", s, [f"--model_dir={model}", "--threshold=abc"], False, None),
        ("score: threshold=nan", s, [f"--model_dir={model}", "--threshold=nan"], False, None),
        ("score: mode=foo", s, [f"--model_dir={model}", "--mode=foo"], False, None),
        ("score: image_score=foo", s, [f"--model_dir={model}", "--image_score=foo"], False, None),
        ("score: map_kernel_size without calibrate_dir", s,
         [f"--model_dir={model}", "--map_kernel_size=5"], False, None),
        ("score: map_max on an old model dir", s,
         [f"--model_dir={old}", "--image_score=map_max"], False, None),
        ("score: old model dir decides by study", s,
         [f"--model_dir={old}", f"--output_dir={work}/o_old", "--synthetic_counts=good:2"],
         True, None),
        ("score: synthetic_counts bad", s,
         [f"--model_dir={model}", "--synthetic_counts=good:x"], False, None),
        ("score: calibrate_dir with corrupt file", s,
         [f"--model_dir={model}", f"--calibrate_dir={folders['corrupt']}"], False, None),
        ("score: saved_model is the export base", s, [f"--saved_model={work}/serving"], False,
         None),
        ("score: saved_model without saved_model.pb", s, [f"--saved_model={no_pb}"], False, None),
        ("score: saved_model missing", s, [f"--saved_model={work}/none"], False, None),
        ("score: TIFF folder through the export", s,
         [f"--saved_model={export}", f"--data_dir={folders['tiffs']}",
          f"--output_dir={work}/o_tiff"], True, None),
        ("score: bomb in data_dir, --skip_corrupt", s,
         [f"--model_dir={model}", f"--data_dir={folders['bomb']}", "--skip_corrupt",
          f"--output_dir={work}/o_bomb"], True, None),
    ]
    e = ("export_main.py",)
    for name, path in damaged.items():
        cases.append((f"calibration: {name} (score)", s, [f"--model_dir={path}", "--mode=encoder",
                                                          f"--output_dir={work}/o_d"],
                      False, f"{work}/o_d"))
        cases.append((f"calibration: {name} (export)", e,
                      [f"--model_dir={path}", "--mode=encoder", f"--export_dir={work}/e_d"],
                      False, f"{work}/e_d"))
    cases += [
        ("calibrate_dir: labelled root (good/ only)", s,
         [f"--model_dir={recal_model}", "--mode=encoder", f"--calibrate_dir={labelled_root}",
          f"--output_dir={work}/o_lab", "--synthetic_counts=good:2"], True, None),
        ("calibrate_dir: two images", s,
         [f"--model_dir={recal_model}", "--mode=encoder", f"--calibrate_dir={two_good}"],
         False, None),
        ("calibrate_dir: missing folder (before TF)", s,
         [f"--model_dir={model}", f"--calibrate_dir={work}/none"], False, None),
        ("calibrate_dir: map_kernel_size=101 > image", s,
         [f"--model_dir={recal_model}", f"--calibrate_dir={labelled_root}",
          "--map_kernel_size=101"], False, None),
        ("calibrate_dir: repairs NaN pixel_threshold", s,
         [f"--model_dir={repair_model}", "--mode=encoder", f"--calibrate_dir={labelled_root}",
          f"--output_dir={work}/o_rep", "--synthetic_counts=good:2"], True, None),
        ("calibrate_dir: map_alignment_tolerance=5", s,
         [f"--model_dir={model}", f"--calibrate_dir={labelled_root}",
          "--map_alignment_tolerance=5"], False, None),
        ("calibrate_dir: map_neighbours=-1", s,
         [f"--model_dir={model}", f"--calibrate_dir={labelled_root}", "--map_neighbours=-1"],
         False, None),
        ("score: data_dir missing (before TF)", s,
         [f"--model_dir={model}", f"--data_dir={work}/none"], False, None),
        ("score: mode=bogus and model_dir missing", s,
         [f"--model_dir={work}/none", "--mode=bogus"], False, None),
        ("train: map_kernel_size=101 > image", t, [fresh(40), "--map_kernel_size=101"], False,
         f"{work}/new_40"),
        ("train: map_alignment_tolerance=8 on 16 px", t,
         [fresh(41), "--map_alignment_tolerance=8"], False, f"{work}/new_41"),
        ("train: collective_timeout_seconds=-1", t,
         [fresh(42), "--collective_timeout_seconds=-1"], False, f"{work}/new_42"),
    ]
    # -- this round: bulk scoring, calibration repair, latents, flags the docs name --
    b = ("bulk_score_main.py",)
    hostile = folder("hostile", {"good1.png": good_png, "good2.png": good_png})
    for sub in ("a b", "a_b"):
        folder(f"hostile/{sub}", {"part.png": good_png})
    os.makedirs(os.path.join(hostile, "folder.png"), exist_ok=True)
    os.symlink(os.path.join(hostile, "missing.png"), os.path.join(hostile, "dangling.png"))
    os.symlink(os.path.join(hostile, "loop.png"), os.path.join(hostile, "loop.png"))
    truncated_export = os.path.join(work, "serving_cut", "1")
    shutil.copytree(export, truncated_export)
    cut(truncated_export, "saved_model.pb", keep=300)
    no_variables = os.path.join(work, "serving_novars", "1")
    shutil.copytree(export, no_variables)
    shutil.rmtree(os.path.join(no_variables, "variables"))
    out_folder = os.path.join(work, "bulk_out_folder")
    os.makedirs(out_folder)
    narrow_model = broken_model("m_narrow", lambda p: None)
    code, _, message = _run("score_main.py", f"--model_dir={narrow_model}", "--mode=encoder",
                            f"--calibrate_dir={labelled_root}", f"--output_dir={work}/o_n",
                            "--synthetic_counts=good:2")
    assert code == 0, message

    def narrow_latents(path):
        import base64
        stored = json.load(open(f"{path}/calibration.json"))
        references = stored["modes"]["encoder"]["map"]["references"]["latents"]
        latents = np.frombuffer(base64.b64decode(references["float32_base64"]), "<f4")
        latents = latents.reshape(references["shape"])[:, :3].copy()
        references.update(shape=list(latents.shape),
                          float32_base64=base64.b64encode(latents.tobytes()).decode())
        open(f"{path}/calibration.json", "w").write(json.dumps(stored))
    narrow_latents(narrow_model)
    other_damaged = broken_model("m_other_damaged", damage(set_in(
        "encoder", "image_scores", "map_max", "threshold", value=float("nan"))))
    bulk_common = [f"--saved_model={export}", f"--input_pattern={hostile}/*"]
    cases += [
        ("bulk: --saved_model missing", b,
         [f"--input_pattern={hostile}/*", f"--output={work}/b1_"], False,
         f"{work}/b1_summary.json"),
        ("bulk: --max_batch_size=abc", b, [*bulk_common, f"--output={work}/b2_",
                                           "--max_batch_size=abc"], False, None),
        ("bulk: --tf_threads=-1", b, [*bulk_common, f"--output={work}/b3_", "--tf_threads=-1"],
         False, None),
        ("bulk: truncated saved_model.pb", b,
         [f"--saved_model={truncated_export}", f"--input_pattern={hostile}/*",
          f"--output={work}/b4_"], False, None),
        ("bulk: export without variables/", b,
         [f"--saved_model={no_variables}", f"--input_pattern={hostile}/*",
          f"--output={work}/b5_"], False, None),
        ("bulk: folder, dangling link, loop, a b/a_b masks, overlapping globs", b,
         [*bulk_common, f"--input_pattern={hostile}/*.png", f"--input_pattern={hostile}/*/*.png",
          f"--output={work}/b6_", "--write_masks"], True, None),
        ("bulk: --output an existing folder", b, [*bulk_common, f"--output={out_folder}"],
         True, f"{out_folder}scores-00000-of-00001.csv"),
        ("export: --batch_size (no batch size: refused)", e,
         [f"--model_dir={model}", f"--export_dir={work}/e_bs", "--batch_size=8"], False,
         f"{work}/e_bs"),
        ("score: reference latents of width 3 (z has 8)", s,
         [f"--model_dir={narrow_model}", "--mode=encoder", f"--output_dir={work}/o_narrow"],
         False, f"{work}/o_narrow"),
        ("export: reference latents of width 3 (z has 8)", e,
         [f"--model_dir={narrow_model}", "--mode=encoder", f"--export_dir={work}/e_narrow"],
         False, f"{work}/e_narrow"),
        ("calibrate_dir: another mode damaged (refused before the search)", s,
         [f"--model_dir={other_damaged}", "--mode=search", f"--calibrate_dir={labelled_root}",
          f"--output_dir={work}/o_other"], False, f"{work}/o_other"),
        ("calibrate_dir: map_neighbours=10**12", s,
         [f"--model_dir={recal_model}", f"--calibrate_dir={labelled_root}",
          "--map_neighbours=1000000000000"], False, None),
        ("calibrate_dir: map_neighbours=50 of 12 images (in force: 9)", s,
         [f"--model_dir={recal_model}", "--mode=encoder", f"--calibrate_dir={labelled_root}",
          "--map_neighbours=50", f"--output_dir={work}/o_nb", "--synthetic_counts=good:2"],
         True, None),
    ]
    env_cases = [
        ("TF_CONFIG unset, multi_worker", t, [fresh(43), "--strategy=multi_worker"], {},
         f"{work}/new_43"),
        ("TF_CONFIG not JSON, auto", t, [fresh(44)], {"TF_CONFIG": "{cluster"},
         f"{work}/new_44"),
        ("TF_CONFIG index 5 of 2", t, [fresh(45), "--strategy=multi_worker"],
         {"TF_CONFIG": cluster_two.replace('"index": 0', '"index": 5')}, f"{work}/new_45"),
        ("TF_CONFIG task type wroker", t, [fresh(46), "--strategy=multi_worker"],
         {"TF_CONFIG": cluster_two.replace('"type": "worker"', '"type": "wroker"')},
         f"{work}/new_46"),
        ("TF_CONFIG empty cluster list", t, [fresh(47), "--strategy=multi_worker"],
         {"TF_CONFIG": '{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}'},
         f"{work}/new_47"),
        ("TF_CONFIG not JSON, --strategy=default trains (ignored)", t,
         [fresh(48), f"--log_dir={work}/logs48", *TINY, "--strategy=default", "--noencoder",
          "--nocalibrate"],
         {"TF_CONFIG": "{cluster"}, None),
    ]
    rows = []
    for name, (script,), case_args, should_succeed, must_not_exist in cases + [
            (n, sc, a, n.endswith("(ignored)"), m) for n, sc, a, _, m in env_cases]:
        env = next((v for n, _, _, v, _ in env_cases if n == name), None)
        calibration_file = next((f"{a[len('--model_dir='):]}/calibration.json" for a in case_args
                                 if a.startswith("--model_dir=")), None)
        before = (open(calibration_file).read() if calibration_file
                  and os.path.exists(calibration_file) else None)
        code, traceback, message = _run(script, *case_args, env_changes=env)
        left = bool(must_not_exist and os.path.exists(must_not_exist))
        if not should_succeed and before is not None:  # a refusal leaves calibration.json be
            left = left or open(calibration_file).read() != before
        ok = (code == 0) if should_succeed else (code != 0 and not traceback)
        rows.append((name, code, traceback, left, ok and not left, message))

    # The hostile bulk run: every listed path one row or one error, no temp folder left.
    summary = json.load(open(f"{work}/b6_summary.json"))
    accounted = summary["files_matched"] == summary["scored"] + summary["refused"] == 9
    left = bool(glob.glob(f"{work}/beam-temp-*") + glob.glob(f"{out_folder}/beam-temp-*"))
    rows.append(("bulk: hostile folder accounted for (9 = scored + refused, 5 duplicates)",
                 0, False, left, accounted and summary["duplicates"] == 5 and not left,
                 f"matched {summary['files_matched']}, scored {summary['scored']}, refused "
                 f"{summary['refused']}, duplicates {summary['duplicates']}"))
    rows.append(("bulk: --output folder written inside it", 0, False, False,
                 os.path.exists(os.path.join(out_folder, "summary.json")),
                 str(sorted(os.listdir(out_folder)))[:150]))
    nb = json.load(open(f"{recal_model}/calibration.json"))["modes"]["encoder"]
    rows.append(("calibrate_dir: map_neighbours=50 recorded as in force", 0, False, False,
                 nb["map"]["config"]["neighbours"] == 9,
                 nb["map_settings"]["neighbours"]["reason"][:150]))

    import numpy as np  # noqa: F811
    import tensorflow as tf
    loaded = tf.saved_model.load(export)
    signature_cases = [
        ("signature: empty uint8 batch", lambda: loaded.signatures["serving_default"](
            images=tf.zeros([0, 16, 16, 1], tf.uint8))["anomaly_score"].shape == (0,)),
        ("signature: empty string batch", lambda: loaded.signatures["score_encoded"](
            image_bytes=tf.constant([], tf.string))["anomaly_score"].shape == (0,)),
        ("signature: rank-2 strings", lambda: loaded.signatures["score_encoded"](
            image_bytes=tf.constant([[good_png]]))),
        ("signature: one undecodable element", lambda: loaded.signatures["score_encoded"](
            image_bytes=tf.constant([good_png, b"junk"]))),
        ("signature: TIFF bytes", lambda: loaded.signatures["score_encoded"](
            image_bytes=tf.constant([tiff.getvalue()]))),
        ("signature: wrong size", lambda: loaded.signatures["serving_default"](
            images=tf.zeros([1, 20, 16, 1], tf.uint8))),
        ("signature: three channels", lambda: loaded.signatures["serving_default"](
            images=tf.zeros([1, 16, 16, 3], tf.uint8))),
        ("signature: rank 3", lambda: loaded.signatures["serving_default"](
            images=tf.zeros([16, 16, 1], tf.uint8))),
        ("signature: NaN pixels judged anomalous", lambda: bool(loaded.signatures["score_float"](
            images=tf.fill([1, 16, 16, 1], float("nan")))["is_anomaly"].numpy()[0])),
        ("signature: inf pixels judged anomalous", lambda: bool(loaded.signatures["score_float"](
            images=tf.fill([1, 16, 16, 1], float("inf")))["is_anomaly"].numpy()[0])),
    ]
    for name, call in signature_cases:
        try:
            result = call()
            ok = result is True
            message = f"returned {result!r}" if isinstance(result, bool) else "returned outputs"
            code = 0
        except tf.errors.InvalidArgumentError as e:
            found = [line for line in e.message.splitlines()
                     if "expected" in line or "not a PNG" in line]
            message = (found[0] if found else e.message.splitlines()[0]).strip()[:160]
            ok, code = bool(found), 1
        rows.append((name, code, False, False, ok, message))

    print("| case | exit | traceback | left behind | ok | message |")
    print("|---|---:|---|---|---|---|")
    for name, code, traceback, left, ok, message in rows:
        print(f"| {name} | {code} | {'yes' if traceback else ''} | {'yes' if left else ''} | "
              f"{'ok' if ok else 'NO'} | {message.replace('|', '/')} |")
    print(f"\n{sum(r[4] for r in rows)} of {len(rows)} cases ok")


if __name__ == "__main__":
    main()
