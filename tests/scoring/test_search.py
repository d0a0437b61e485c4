
import numpy as np
import pytest
import tensorflow as tf

from ic_anogan.config import SearchConfig, SearchRuntime
from ic_anogan.models import losses
from ic_anogan.scoring.search import LatentSearch


@pytest.fixture()
def images(rng):
    return rng.uniform(-1, 1, (5, 16, 16, 1)).astype(np.float32)


def _search(tiny_models, runtime=SearchRuntime(), **overrides):
    generator, _, features = tiny_models
    return LatentSearch(generator, features, SearchConfig(**{"steps": 20, **overrides}),
                        runtime=runtime)


def test_outputs_shapes_and_consistency(tiny_models, images):
    out = _search(tiny_models).score(images)
    assert out["anomaly_score"].shape == (5,)
    assert out["reconstruction"].shape == out["anomaly_map"].shape == (5, 16, 16, 1)
    assert out["latent"].shape == (5, 8)
    np.testing.assert_allclose(out["anomaly_map"], np.abs(images - out["reconstruction"]),
                               atol=1e-6)
    np.testing.assert_allclose(out["residual_score"],
                               np.abs(images - out["reconstruction"]).sum(axis=(1, 2, 3)),
                               rtol=1e-5)
    np.testing.assert_allclose(out["anomaly_score"],
                               0.9 * out["residual_score"] + 0.1 * out["discrimination_score"],
                               rtol=1e-5)


def test_deterministic(tiny_models, images):
    search = _search(tiny_models)
    a, b = search.score(images), search.score(images)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_batch_invariance(tiny_models, images):
    search = _search(tiny_models, restarts=2)
    together = search.score(images)
    for i in range(len(images)):
        alone = search.score(images[i:i + 1])
        np.testing.assert_allclose(alone["anomaly_score"], together["anomaly_score"][i:i + 1],
                                   rtol=1e-4)
        np.testing.assert_allclose(alone["latent"], together["latent"][i:i + 1], atol=1e-4)


def test_search_lowers_the_loss(tiny_models, images):
    start = _search(tiny_models, steps=0).score(images)["anomaly_score"]
    end = _search(tiny_models, steps=30).score(images)["anomaly_score"]
    assert np.all(end.numpy() < start.numpy())


def test_generated_image_is_reconstructed(tiny_models):
    generator, _, _ = tiny_models
    z_star = tf.random.stateless_normal([3, 8], seed=[9, 9])
    target = generator(z_star, training=False).numpy()
    start = _search(tiny_models, steps=0).score(target)["anomaly_score"].numpy()
    end = _search(tiny_models, steps=400, learning_rate=0.05).score(target)[
        "anomaly_score"].numpy()
    assert np.all(end < 0.1 * start), (start, end)


def _eager_reference(tiny_models, image, config):
    """A plain eager loop, one image, textbook Adam, written independently."""
    generator, _, features = tiny_models
    z = tf.random.stateless_normal([8], seed=[config.seed, 0])[None]
    m = np.zeros((1, 8), np.float32)
    v = np.zeros((1, 8), np.float32)
    target_features = features(image, training=False)
    for t in range(1, config.steps + 1):
        with tf.GradientTape() as tape:
            tape.watch(z)
            g = generator(z, training=False)
            loss = ((1 - config.discrimination_weight) * tf.reduce_sum(tf.abs(image - g))
                    + config.discrimination_weight
                    * tf.reduce_sum(tf.abs(target_features - features(g, training=False))))
        grad = tape.gradient(loss, z).numpy()
        m = config.beta_1 * m + (1 - config.beta_1) * grad
        v = config.beta_2 * v + (1 - config.beta_2) * grad ** 2
        m_hat = m / (1 - config.beta_1 ** t)
        v_hat = v / (1 - config.beta_2 ** t)
        z = tf.constant(z.numpy() - config.learning_rate * m_hat / (np.sqrt(v_hat) + config.epsilon))
    return z.numpy(), float(loss)


def test_matches_an_eager_reference_loop(tiny_models, images):
    config = SearchConfig(steps=15, learning_rate=0.02)
    generator, _, features = tiny_models
    out = LatentSearch(generator, features, config).score(images[:2])
    for i in range(2):
        z_ref, _ = _eager_reference(tiny_models, images[i:i + 1], config)
        np.testing.assert_allclose(out["latent"][i], z_ref[0], atol=1e-5)


def test_restarts_never_worse_than_one_start(tiny_models, images):
    one = _search(tiny_models, restarts=1).score(images)["anomaly_score"].numpy()
    four = _search(tiny_models, restarts=4).score(images)["anomaly_score"].numpy()
    assert np.all(four <= one + 1e-4)
    assert np.any(four < one - 1e-3)  # with four starts some image does better


def test_chunked_equals_one_piece(tiny_models, images):
    search = _search(tiny_models, steps=23, restarts=2)
    whole = search.score(images)
    seen = []
    chunked = search.score_in_chunks(images, chunk_steps=5, on_chunk=seen.append)
    assert seen == [5, 10, 15, 20, 23]
    for key in whole:
        np.testing.assert_allclose(chunked[key], whole[key], rtol=1e-5, atol=1e-5)


def test_clip_z_bounds_the_latent(tiny_models, images):
    out = _search(tiny_models, steps=30, learning_rate=0.5, clip_z=0.3).score(images)
    assert np.abs(out["latent"].numpy()).max() <= 0.3 + 1e-7


def test_search_holds_no_state_of_its_own(tiny_models):
    generator, discriminator, _ = tiny_models
    search = _search(tiny_models)
    model_variables = {id(v) for v in generator.variables} | {id(v) for v in discriminator.variables}
    assert {id(v) for v in search.variables} <= model_variables


def test_jit_compile_gives_the_same_scores(tiny_models, images):
    plain = _search(tiny_models).score(images)["anomaly_score"]
    jitted = _search(tiny_models, runtime=SearchRuntime(jit_compile=True)).score(
        images)["anomaly_score"]
    np.testing.assert_allclose(jitted, plain, rtol=1e-3)


def test_loss_terms_are_the_shared_definitions(tiny_models, images):
    generator, _, features = tiny_models
    search = _search(tiny_models, steps=0)
    out = search.score(images)
    z0 = search.initial_latents()
    reconstruction = generator(tf.tile(z0, [5, 1]), training=False)
    expected = losses.anomaly_score(
        losses.residual_score(images, reconstruction),
        losses.discrimination_score(features(images), features(reconstruction)), 0.1)
    np.testing.assert_allclose(out["anomaly_score"], expected, rtol=1e-5)
