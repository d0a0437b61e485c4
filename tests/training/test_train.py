import hashlib
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, TINY, run_main, tensorboard_tags

from ic_anogan.config import DataConfig, ModelConfig, TrainConfig
from ic_anogan.data import image_set
from ic_anogan.models import model_dir as model_dir_lib
from ic_anogan.training import callbacks, checkpoints, gan, gan_trainer


def _tiny_trainer(seed=0):
    from ic_anogan.models.networks import build_models
    generator, discriminator, _ = build_models(ModelConfig(**TINY), seed=seed)
    trainer = gan_trainer.GANTrainer(generator, discriminator, seed=seed)
    trainer.compile(*gan_trainer.make_optimizers(TrainConfig()))
    checkpoints.build_optimizers(trainer)
    return trainer


def _weights(model):
    return [w.numpy().copy() for w in model.trainable_weights]


def test_one_train_step_changes_both_networks():
    trainer = _tiny_trainer()
    g_before, d_before = _weights(trainer.generator), _weights(trainer.discriminator)
    batch = tf.random.stateless_uniform([8, 16, 16, 1], seed=[1, 2], minval=-1, maxval=1)
    logs = trainer.train_step(batch)
    assert set(logs) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(np.isfinite(float(v)) for v in logs.values())
    for before, after in ((g_before, _weights(trainer.generator)),
                          (d_before, _weights(trainer.discriminator))):
        assert all(not np.array_equal(b, a) for b, a in zip(before, after))


def test_checkpoint_round_trip(tmp_path):
    trainer = _tiny_trainer()
    trainer.train_step(tf.zeros([4, 16, 16, 1]))
    path = str(tmp_path / "checkpoint.npz")
    checkpoints.save_checkpoint(trainer, path, epoch=3)
    saved = [v.numpy().copy() for v in trainer.checkpoint_variables()]
    trainer.train_step(tf.ones([4, 16, 16, 1]))
    assert checkpoints.restore_checkpoint(trainer, path) == 3
    for before, variable in zip(saved, trainer.checkpoint_variables()):
        np.testing.assert_array_equal(before, variable.numpy())
    other = gan_trainer.GANTrainer(*__import__("ic_anogan.models.networks", fromlist=["x"]).build_models(
        ModelConfig(16, 8, 8))[:2])
    other.compile(*gan_trainer.make_optimizers(TrainConfig()))
    checkpoints.build_optimizers(other)
    with pytest.raises(model_dir_lib.ModelDirError, match="shape"):
        checkpoints.restore_checkpoint(other, path)


def test_model_dir_holds_what_scoring_needs(trained_model_dir):
    model_dir = trained_model_dir["model_dir"]
    assert sorted(os.listdir(model_dir)) == sorted([
        "calibration.json", "checkpoint.npz", "config.json", "discriminator.weights.h5",
        "encoder.json", "encoder.weights.h5", "encoder_checkpoint.npz",
        "encoder_history.json", "generator.weights.h5", "heldout.txt", "history.json"])
    stored = json.load(open(os.path.join(model_dir, "config.json")))
    assert stored["model"] == TINY
    assert stored["data"]["train_images"] == 36 and stored["data"]["heldout_images"] == 4
    heldout = open(os.path.join(model_dir, "heldout.txt")).read().split()
    assert heldout == trained_model_dir["result"].heldout.ids and len(heldout) == 4
    history = json.load(open(os.path.join(model_dir, "history.json")))
    assert len(history["d_loss"]) == 2 and all(np.isfinite(history["g_loss"]))
    loaded = model_dir_lib.load_trained_model(model_dir)
    assert loaded.model_config == ModelConfig(**TINY)
    assert loaded.encoder is not None
    assert loaded.scoring_modes == ("search", "encoder", "encoder_search")
    calibrated = json.load(open(os.path.join(model_dir, "calibration.json")))["modes"]
    assert sorted(calibrated) == ["encoder", "encoder_search", "search"]
    assert calibrated["encoder"]["search"]["steps"] == 0
    with pytest.raises(model_dir_lib.ModelDirError, match="trained at image size 16"):
        model_dir_lib.load_trained_model(model_dir, image_size=64)


def test_missing_model_dir_errors(tmp_path):
    with pytest.raises(model_dir_lib.ModelDirError, match="nowhere: model directory not found"):
        model_dir_lib.load_trained_model(str(tmp_path / "nowhere"))
    (tmp_path / "half").mkdir()
    with pytest.raises(model_dir_lib.ModelDirError, match="config.json missing"):
        model_dir_lib.load_trained_model(str(tmp_path / "half"))


def test_tensorboard_tags(trained_model_dir):
    log_dir = trained_model_dir["log_dir"]
    assert {"epoch_d_loss", "epoch_g_loss", "epoch_d_real", "epoch_d_fake"} <= tensorboard_tags(
        os.path.join(log_dir, "train"))
    assert tensorboard_tags(os.path.join(log_dir, "images")) == {"generated_samples"}
    assert tensorboard_tags(os.path.join(log_dir, "monitor")) == {
        "monitor/heldout_anomaly_score", "monitor/heldout_reconstruction_error",
        "monitor/reconstructions"}


def _hash(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _tiny_train(tmp_path, epochs, **kwargs):
    return gan.train(model_dir=str(tmp_path / "model"), log_dir=str(tmp_path / "logs"),
                       model_config=ModelConfig(**TINY),
                       train_config=TrainConfig(batch_size=8, epochs=epochs,
                                                monitor_every_epochs=0),
                       data_config=DataConfig(synthetic_train_count=20), verbose=0, **kwargs)


def test_killed_run_resumes_from_last_epoch(tmp_path):
    script = textwrap.dedent(f"""
        import os, keras
        from ic_anogan.training import gan
        from ic_anogan.config import DataConfig, ModelConfig, TrainConfig

        class Kill(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 1:
                    os._exit(3)  # like a kill -9 after epoch 2's checkpoint

        gan.train(model_dir={str(tmp_path / 'model')!r}, log_dir={str(tmp_path / 'logs')!r},
                    model_config=ModelConfig(**{TINY!r}),
                    train_config=TrainConfig(batch_size=8, epochs=4, monitor_every_epochs=0),
                    data_config=DataConfig(synthetic_train_count=20), verbose=0,
                    extra_callbacks=[lambda **_: Kill()])
    """)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == 3, killed.stderr[-2000:]
    checkpoint = str(tmp_path / "model" / "checkpoint.npz")
    assert int(np.load(checkpoint)["epoch"]) == 2
    assert not os.path.exists(tmp_path / "model" / "generator.weights.h5")

    epochs_seen = []
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs=None: epochs_seen.append(epoch))
    result = _tiny_train(tmp_path, epochs=4, extra_callbacks=[lambda **_: recorder])
    assert epochs_seen == [2, 3] and result.epochs_run == 2
    assert int(np.load(checkpoint)["epoch"]) == 4
    # The history keeps the killed run's two epochs and the resumed two.
    history = json.load(open(tmp_path / "model" / "history.json"))
    assert len(history["d_loss"]) == 4 and result.history == history
    # Started again once more, there is nothing left to do.
    assert _tiny_train(tmp_path, epochs=4).epochs_run == 0


def test_resume_with_other_settings_is_refused(tmp_path):
    _tiny_train(tmp_path, epochs=1)
    with pytest.raises(model_dir_lib.ModelDirError,
                       match="model.base_filters=4, this command asks for 8"):
        gan.train(model_dir=str(tmp_path / "model"), log_dir=str(tmp_path / "logs"),
                    model_config=ModelConfig(16, 8, 8),
                    train_config=TrainConfig(batch_size=8, epochs=2, monitor_every_epochs=0),
                    data_config=DataConfig(synthetic_train_count=20), verbose=0)


class _PoisonGenerator(keras.callbacks.Callback):
    def __init__(self, trainer):
        super().__init__()
        self.trainer = trainer

    def on_train_batch_begin(self, batch, logs=None):
        kernel = self.trainer.generator.to_image.kernel
        kernel.assign(np.full(kernel.shape, np.nan, np.float32))


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    _tiny_train(tmp_path, epochs=1)
    checkpoint = str(tmp_path / "model" / "checkpoint.npz")
    before = _hash(checkpoint)
    with pytest.raises(callbacks.NonFiniteLossError,
                       match=r"loss became nan at epoch 2, batch 1; .*checkpoint .* is intact"):
        _tiny_train(tmp_path, epochs=2,
                    extra_callbacks=[lambda trainer, **_: _PoisonGenerator(trainer)])
    assert _hash(checkpoint) == before


def test_too_few_images_for_a_batch(tmp_path):
    """Refused with the batch that fits: in words from the library, as a flag from train."""
    with pytest.raises(image_set.DataError, match="fewer than one batch of 64") as refused:
        gan.train(model_dir=str(tmp_path / "m"), log_dir=str(tmp_path / "l"),
                    model_config=ModelConfig(**TINY), train_config=TrainConfig(batch_size=64),
                    data_config=DataConfig(synthetic_train_count=20), verbose=0)
    assert refused.value.remedy == {"train.batch_size": 16}  # 18 images after the hold-out
    done = run_main("train_main.py", f"--model_dir={tmp_path / 'm2'}",
                    f"--log_dir={tmp_path / 'l2'}", "--image_size=16", "--latent_dim=8",
                    "--base_filters=4", "--synthetic_train_count=20")
    assert done.returncode == 1, done.stderr[-1500:]
    assert "fewer than one batch of 64; lower the batch size (--batch_size=16)" in done.stderr


def test_mirrored_strategy_on_two_cpu_devices(tmp_path):
    """Two replicas with batch 4 train the weights one device with batch 8 would: batch
    norm over the global batch, each replica's rows of the global batch's noise."""
    script = textwrap.dedent(f"""
        import json, numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from ic_anogan.models import model_dir
        from ic_anogan.training import gan
        from ic_anogan.config import DataConfig, ModelConfig, TrainConfig
        runs = {{}}
        for name, strategy, batch in (
                ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), 4),
                ("one_device", tf.distribute.get_strategy(), 8)):
            runs[name] = gan.train(
                model_dir={str(tmp_path)!r} + "/" + name, log_dir={str(tmp_path)!r} + "/logs",
                model_config=ModelConfig(**{TINY!r}),
                train_config=TrainConfig(batch_size=batch, epochs=1, monitor_every_epochs=1,
                                         monitor_search_steps=2),
                data_config=DataConfig(synthetic_train_count=20), strategy=strategy,
                verbose=0)
        a, b = (model_dir.load_trained_model({str(tmp_path)!r} + "/" + n)
                for n in ("mirrored", "one_device"))
        difference = max(float(np.abs(x.numpy() - y.numpy()).max()) for x, y in zip(
            a.generator.weights + a.discriminator.weights,
            b.generator.weights + b.discriminator.weights))
        print("RESULT", json.dumps({{"history": runs["mirrored"].history,
                                    "difference": difference}}))
    """)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")][0]
    result = json.loads(line[len("RESULT "):])
    # Finite losses on the scale of a fresh GAN (BCE near 2 ln 2 and ln 2)...
    assert len(result["history"]["d_loss"]) == 1
    assert all(0.1 < v < 5 for v in result["history"]["d_loss"] + result["history"]["g_loss"])
    # ... and the weights of one device, up to float summation order (50 updates).
    assert result["difference"] < 1e-4, result["difference"]


def test_train_main_refuses_bad_flags_before_tensorflow_loads(tmp_path):
    """train_main.py's full run is its smoke test in test_multi_worker.py (two workers,
    every mode calibrated); here its refusals, which answer before TensorFlow loads."""
    for flag, message in (("--image_size=48", "--image_size=48: expected one of (16, 32"),
                          ("--batch_size=-1", "--batch_size=-1: expected a positive integer"),
                          ("--encoder_epochs=0", "--encoder_epochs=0: expected a positive"),
                          ("--encoder_feature_weight=-1",
                           "--encoder_feature_weight=-1.0: expected a finite number >= 0"),
                          ("--validation_fraction=1.5",
                           "--validation_fraction=1.5: expected a number in [0, 1)"),
                          (f"--data_dir={tmp_path / 'no_such_folder'}",
                           "no_such_folder: folder not found")):
        bad = run_main("train_main.py", f"--model_dir={tmp_path / 'x'}", flag)
        assert bad.returncode != 0 and message in bad.stderr, bad.stderr[-2000:]
        assert "Traceback" not in bad.stderr
        assert not os.path.exists(tmp_path / "x")


def test_the_pipeline_without_encoder_calibrates_the_search_only(tmp_path):
    from ic_anogan.config import CalibrationConfig, SearchConfig
    from ic_anogan.jobs import train_job
    result = train_job.train_and_calibrate(
        model_dir=str(tmp_path / "n"), log_dir=str(tmp_path / "logs"),
        model_config=ModelConfig(**TINY),
        train_config=TrainConfig(batch_size=8, epochs=1, monitor_every_epochs=0),
        data_config=DataConfig(synthetic_train_count=20), search_config=SearchConfig(steps=3),
        encoder_config=None, calibration_config=CalibrationConfig(batch_size=8), verbose=0)
    assert result.encoder is None and list(result.calibration) == ["search"]
    assert not os.path.exists(tmp_path / "n" / "encoder.weights.h5")
    assert list(json.load(open(tmp_path / "n" / "calibration.json"))["modes"]) == ["search"]
    assert result.calibration["search"]["search"]["steps"] == 3
    # config.json records what was asked, as one RunConfig.
    from ic_anogan.config import RunConfig
    run = RunConfig.from_dict(json.load(open(tmp_path / "n" / "config.json"))["run"])
    assert run.encoder is None and run.search == SearchConfig(steps=3)
    assert run.train == TrainConfig(batch_size=8, epochs=1, monitor_every_epochs=0)
