"""Two real worker processes on 127.0.0.1 train through train_main.py --strategy=multi_worker.

The same two launches are README's "Training across machines" section: one
TF_CONFIG per worker, the same command on both. The first launch trains one
epoch; the second, with --epochs=2, is the restarted job and must resume. This
is also train_main.py's smoke test: the binary, run as __main__, from flags
to a model directory with every mode calibrated.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
from conftest import REPO, TINY

PER_WORKER_BATCH = 4
FLAGS = ["--strategy=multi_worker", "--image_size=16", "--latent_dim=8", "--base_filters=4",
         f"--batch_size={PER_WORKER_BATCH}", "--synthetic_train_count=40",
         "--monitor_every_epochs=0", "--encoder_epochs=1", "--search_steps=2",
         "--encoder_search_steps=2", "--search_batch_size=8"]

# Runs train_main.py as its own __main__, after noting every path this process
# writes through the library (atomic_io) or TensorBoard (tf.summary writers).
WRAPPER = textwrap.dedent("""
    import atexit, json, os, runpy, sys
    import tensorflow as tf
    from ic_anogan.core import atomic_io
    written = []
    temp_path, file_writer = atomic_io._temp_path, tf.summary.create_file_writer
    def noted_temp_path(path, suffix=""):
        written.append(os.path.abspath(path))
        return temp_path(path, suffix)
    def noted_file_writer(logdir, *args, **kwargs):
        written.append(os.path.abspath(logdir))
        return file_writer(logdir, *args, **kwargs)
    atomic_io._temp_path, tf.summary.create_file_writer = noted_temp_path, noted_file_writer
    atexit.register(lambda: open(os.environ["WRITES"], "w").write(json.dumps(written)))
    if os.environ.get("KILL_AT_UPDATE"):  # this worker dies mid-run, as a killed machine does
        from ic_anogan.training import callbacks
        seen = [0]
        def dying_batch_end(self, batch, logs=None):
            seen[0] += 1
            if seen[0] == int(os.environ["KILL_AT_UPDATE"]):
                open(os.environ["WRITES"], "w").write(json.dumps(written))
                os._exit(9)
        callbacks.StopOnNonFiniteLoss.on_train_batch_end = dying_batch_end
    if os.environ.get("STALL_AT_UPDATE"):  # this worker stops, as a hung machine does
        import signal, time
        from ic_anogan.training import callbacks
        seen = [0]
        def stalling_batch_end(self, batch, logs=None):
            seen[0] += 1
            if seen[0] == int(os.environ["STALL_AT_UPDATE"]):
                open(os.environ["WRITES"], "w").write(json.dumps(written))
                open(os.environ["STALLED_AT"], "w").write(str(time.time()))
                os.kill(os.getpid(), signal.SIGSTOP)
        callbacks.StopOnNonFiniteLoss.on_train_batch_end = stalling_batch_end
    sys.argv = [sys.argv[1]] + sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


def _launch(tmp_path, tf_configs, model_dir, log_dir, flags, launch, kill_at=None,
            stall_at=None):
    """Starts both workers with the same command (worker 1 killed, or stopped with
    SIGSTOP, at update `kill_at` or `stall_at`); returns their CompletedProcess-like
    results, the paths each wrote and the seconds each took. A stopped worker is killed
    once worker 0 has ended."""
    processes, writes = [], []
    start = time.monotonic()
    for index in range(2):
        temp = tmp_path / f"worker{index}_tmp_{launch}"
        temp.mkdir()
        writes.append(tmp_path / f"writes{index}_{launch}.json")
        env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(temp),
                   WRITES=str(writes[-1]), TF_CONFIG=tf_configs[index])
        if kill_at and index == 1:
            env["KILL_AT_UPDATE"] = str(kill_at)
        if stall_at and index == 1:
            env.update(STALL_AT_UPDATE=str(stall_at),
                       STALLED_AT=str(tmp_path / f"stalled_at_{launch}"))
        processes.append(subprocess.Popen(
            [sys.executable, "-c", WRAPPER, os.path.join(REPO, "train_main.py"), *FLAGS,
             f"--model_dir={model_dir}", f"--log_dir={log_dir}", *flags],
            env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    results, seconds = [], []
    for index, process in enumerate(processes):
        if stall_at and index == 1:
            process.kill()
        stdout, stderr = process.communicate(timeout=300)
        results.append((process.returncode, stdout, stderr))
        seconds.append(time.monotonic() - start)
    return results, [json.loads(w.read_text()) for w in writes], seconds


def test_two_workers_train_resume_and_match_one_process(tmp_path):
    from ic_anogan.config import DataConfig, EncoderConfig, ModelConfig, TrainConfig
    from ic_anogan.models import model_dir as model_dir_lib
    from ic_anogan.scoring import calibration
    from ic_anogan.training import distribution, encoder as encoder_train, gan

    model_dir, log_dir = tmp_path / "model", tmp_path / "logs"
    tf_configs = distribution.local_cluster(2)
    # In the first launch worker 1 is killed at update 6, in the second epoch (an
    # epoch is one pass over the 36 training images, 4 or 5 updates of 8): worker 0
    # must end within the collective timeout, naming it, and keep
    # epoch 1's checkpoint. The second launch is README's command, the job restarted:
    # it resumes the GAN after epoch 1, then trains the encoder and calibrates.
    timeout = 20
    for launch, flags in enumerate((["--epochs=2", "--noencoder", "--nocalibrate",
                                     f"--collective_timeout_seconds={timeout}"],
                                    ["--epochs=2"])):
        results, writes, seconds = _launch(tmp_path, tf_configs, model_dir, log_dir, flags,
                                           launch, kill_at=6 if launch == 0 else None)
        if launch == 0:
            assert results[1][0] == 9
            code, _, stderr = results[0]
            assert code == 1, stderr[-3000:]
            assert "worker 0: lost worker 1 (127.0.0.1:" in stderr, stderr[-3000:]
            assert "training resumes after the last finished epoch" in stderr
            assert "Traceback" not in stderr.split("lost worker 1")[-1]
            assert seconds[0] < 120, seconds  # bounded, not a hang
            assert len(json.load(open(model_dir / "history.json"))["d_loss"]) == 1
            continue
        for index, (code, stdout, stderr) in enumerate(results):
            assert code == 0, (index, stderr[-3000:])
        # Only the chief writes the shared directories; worker 1 writes only under its
        # own temporary folder, which is gone when it finishes.
        assert writes[0] and all(p.startswith((str(model_dir), str(log_dir))) for p in writes[0])
        worker_temp = str(tmp_path / f"worker1_tmp_{launch}")
        assert writes[1] and all(p.startswith(worker_temp) for p in writes[1]), writes[1]
        assert os.listdir(worker_temp) == []
        if launch == 1:
            assert "resuming" in results[0][2] and "after epoch 1" in results[0][2]
            for mode, steps in (("search", 2), ("encoder", 0), ("encoder_search", 2)):
                assert f"calibrated {mode} (Γ = {steps}) on 4 held-out good images" in \
                    results[0][2]
            assert "calibrated" not in results[1][2]  # the chief's work only
            assert "model written to" in results[0][1]
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["model", "logs"] + [f"worker{i}_tmp_{n}" for i in range(2) for n in range(2)]
        + [f"writes{i}_{n}.json" for i in range(2) for n in range(2)])

    # The chief's model directory is complete and loads, every mode calibrated.
    model = model_dir_lib.load_trained_model(str(model_dir))
    assert model.encoder is not None
    assert set(calibration.read_all(str(model_dir))) == {"search", "encoder", "encoder_search"}
    stored = json.load(open(model_dir / "config.json"))
    assert stored["train"]["epochs"] == 2 and len(json.load(
        open(model_dir / "history.json"))["d_loss"]) == 2

    # One process with the global batch, never stopped, draws the same batches and
    # noise: G and D agree up to float summation order (6e-5 measured). E trains 50 more
    # updates against those slightly different G and D, so its bound is looser.
    reference_dir = str(tmp_path / "one_process")
    reference = gan.train(
        model_dir=reference_dir, log_dir=str(tmp_path / "one_process_logs"),
        model_config=ModelConfig(**TINY),
        train_config=TrainConfig(batch_size=2 * PER_WORKER_BATCH, epochs=2,
                                 monitor_every_epochs=0),
        data_config=DataConfig(synthetic_train_count=40), verbose=0)
    encoder_train.train_encoder(
        model_dir=reference_dir, log_dir=str(tmp_path / "one_process_logs"),
        encoder_config=EncoderConfig(epochs=1, batch_size=2 * PER_WORKER_BATCH),
        train_set=reference.train_set, heldout=reference.heldout, verbose=0)
    single = model_dir_lib.load_trained_model(reference_dir)
    for ours, theirs, tolerance in ((model.generator, single.generator, 5e-4),
                                    (model.discriminator, single.discriminator, 5e-4),
                                    (model.encoder, single.encoder, 3e-3)):
        for a, b in zip(ours.weights, theirs.weights):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=tolerance, err_msg=a.path)


def test_a_stalled_worker_ends_the_job_within_the_timeout(tmp_path):
    """A stopped worker (SIGSTOP: a hung machine, not a dead one) answers no collective:
    worker 0 must end within the collective timeout plus a margin, naming the lost
    worker, and keep only the epoch that finished."""
    from ic_anogan.training import distribution
    model_dir, log_dir = tmp_path / "model", tmp_path / "logs"
    timeout = 10
    results, _, _ = _launch(tmp_path, distribution.local_cluster(2), model_dir, log_dir,
                            ["--epochs=2", "--noencoder", "--nocalibrate",
                             f"--collective_timeout_seconds={timeout}"], 0, stall_at=6)
    ended = time.time()
    code, _, stderr = results[0]
    assert code == 1, stderr[-3000:]
    assert "worker 0: lost worker 1 (127.0.0.1:" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr.split("lost worker 1")[-1]
    stalled_at = float((tmp_path / "stalled_at_0").read_text())
    # Worker 0's own end is before `ended`; the margin covers its error handling and exit.
    assert ended - stalled_at < timeout + 45, ended - stalled_at
    assert len(json.load(open(model_dir / "history.json"))["d_loss"]) == 1
