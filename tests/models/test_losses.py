import numpy as np
import tensorflow as tf

from ic_anogan.models import losses


def test_hand_computed_terms_on_2x2():
    x = tf.constant([[[1.0, -1.0], [0.5, 0.0]]])[..., None]
    g = tf.constant([[[0.5, -1.0], [0.0, 1.0]]])[..., None]
    # |0.5| + 0 + |0.5| + |-1| = 2
    np.testing.assert_allclose(losses.residual_score(x, g).numpy(), [2.0])
    fx = tf.constant([[1.0, 2.0, 3.0]])
    fg = tf.constant([[0.0, 2.0, 5.0]])
    np.testing.assert_allclose(losses.discrimination_score(fx, fg).numpy(), [3.0])
    # (1 - 0.1) * 2 + 0.1 * 3 = 2.1
    np.testing.assert_allclose(losses.anomaly_score(2.0, 3.0, 0.1), 2.1)
    np.testing.assert_allclose(losses.anomaly_map(x, g).numpy()[0, ..., 0],
                               [[0.5, 0.0], [0.5, 1.0]])


def test_scores_are_per_image():
    x = tf.zeros([3, 2, 2, 1])
    g = tf.constant([0.0, 1.0, 2.0])[:, None, None, None] * tf.ones([3, 2, 2, 1])
    np.testing.assert_allclose(losses.residual_score(x, g).numpy(), [0.0, 4.0, 8.0])


def test_gan_losses():
    logits = tf.constant([[0.0], [2.0]])
    np.testing.assert_allclose(losses.generator_loss(logits).numpy(),
                               [np.log(2.0), np.log1p(np.exp(-2.0))], rtol=1e-6)
    d = losses.discriminator_loss(tf.constant([[0.0]]), tf.constant([[0.0]])).numpy()
    np.testing.assert_allclose(d, [2 * np.log(2.0)], rtol=1e-6)
