import numpy as np
import pytest
import tensorflow as tf

from ic_anogan.config import ModelConfig, SearchConfig, SearchRuntime
from ic_anogan.models import folded
from ic_anogan.models.networks import build_models
from ic_anogan.scoring.search import LatentSearch


@pytest.fixture()
def models_with_statistics():
    """Tiny models whose batch norms have non-trivial moving statistics."""
    generator, discriminator, features = build_models(ModelConfig(32, 8, 4), seed=1)
    rng = np.random.default_rng(0)
    for variable in generator.weights + discriminator.weights:
        name = variable.path
        if "moving_mean" in name:
            variable.assign(rng.uniform(-0.05, 0.05, variable.shape).astype(np.float32))
        elif "moving_variance" in name:
            variable.assign(rng.uniform(0.5, 2.0, variable.shape).astype(np.float32) * 1e-3)
        elif "gamma" in name:
            variable.assign(rng.uniform(0.8, 1.2, variable.shape).astype(np.float32))
        elif "beta" in name:
            variable.assign(rng.uniform(-0.1, 0.1, variable.shape).astype(np.float32))
    return generator, discriminator, features


def test_folded_networks_equal_the_keras_models(models_with_statistics):
    generator, discriminator, features = models_with_statistics
    z = tf.random.stateless_normal([5, 8], seed=[1, 2])
    expected = generator(z, training=False)
    assert float(tf.math.reduce_std(expected)) > 0.05  # not a saturated or dead output
    np.testing.assert_allclose(folded.fold_generator(generator)(z), expected, atol=2e-5)
    images = tf.random.stateless_uniform([5, 32, 32, 1], seed=[3, 4], minval=-1, maxval=1)
    expected = features(images, training=False)
    np.testing.assert_allclose(folded.fold_features(discriminator)(images), expected,
                               rtol=1e-4, atol=1e-5 * float(tf.reduce_max(tf.abs(expected))))


def test_search_with_and_without_folding_agree(models_with_statistics):
    generator, _, features = models_with_statistics
    images = np.random.default_rng(3).uniform(-1, 1, (3, 32, 32, 1)).astype(np.float32)
    scores = [LatentSearch(generator, features, SearchConfig(steps=10),
                           runtime=SearchRuntime(fold_batch_norm=fold))
              .score(images)["anomaly_score"].numpy() for fold in (True, False)]
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-4)


def test_folded_encoder_equals_the_keras_encoder():
    from ic_anogan.models.networks import build_encoder
    encoder = build_encoder(ModelConfig(32, 6, 4), seed=7)
    # Non-trivial batch-norm statistics, as after training.
    rng = np.random.default_rng(3)
    for norm in encoder.norms[1:]:
        norm.moving_mean.assign(rng.normal(0, 0.3, norm.moving_mean.shape))
        norm.moving_variance.assign(rng.uniform(0.5, 2.0, norm.moving_variance.shape))
        norm.gamma.assign(rng.uniform(0.5, 1.5, norm.gamma.shape))
        norm.beta.assign(rng.normal(0, 0.2, norm.beta.shape))
    images = rng.uniform(-1, 1, (5, 32, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(folded.fold_encoder(encoder)(images),
                               encoder(images, training=False), rtol=1e-4, atol=1e-5)
