import numpy as np
import pytest

from ic_anogan.config import ModelConfig
from ic_anogan.models.networks import Discriminator, Generator, build_models


@pytest.mark.parametrize("size, blocks", [(16, 2), (32, 3), (64, 4)])
def test_shapes_and_ranges(size, blocks):
    generator, discriminator, features = build_models(ModelConfig(size, 8, 4), seed=0)
    z = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    images = generator(z).numpy()
    assert images.shape == (3, size, size, 1)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images).shape == (3, 1)
    assert features(images).shape == (3, 4, 4, 4 * 2 ** (blocks - 1))
    assert discriminator.feature_shape == (4, 4, 4 * 2 ** (blocks - 1))


def test_reference_dcgan_parameter_counts():
    # The reference 64x64 DCGAN of ../shared/bench/arch.md (ngf = ndf = 64 and 32).
    for filters, g_params, d_params in ((64, 3_576_577, 2_765_377), (32, 1_100_161, 694_561)):
        generator, discriminator, _ = build_models(ModelConfig(64, 100, filters))
        assert generator.count_params() == g_params
        assert discriminator.count_params() == d_params


def test_feature_model_shares_discriminator_weights(tiny_models):
    generator, discriminator, features = tiny_models
    images = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 1)).astype(np.float32)
    before = features(images).numpy()
    kernel = discriminator.convs[0].kernel
    kernel.assign(kernel.numpy() * 2.0)
    assert not np.allclose(features(images).numpy(), before)
    assert {id(w) for w in features.weights} <= {id(w) for w in discriminator.weights}


def test_seeded_initialisation_and_config_round_trip():
    a = Generator(16, 8, 4, seed=1)
    b = Generator.from_config(a.get_config())
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    d = Discriminator.from_config(Discriminator(32, 4, seed=2).get_config())
    assert d.image_size == 32 and d.base_filters == 4


def test_batch_norm_inference_is_batch_independent(tiny_models):
    generator, _, features = tiny_models
    z = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    together = generator(z, training=False).numpy()
    alone = generator(z[:1], training=False).numpy()
    np.testing.assert_allclose(together[:1], alone, atol=1e-6)
