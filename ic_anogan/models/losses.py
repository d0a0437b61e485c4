"""Loss terms, defined once and used by training, monitoring, the search and export.

All functions return one value per image (shape [N]); callers reduce. Keeping
the per-image form is what lets the latent search sum over a batch and still
give every z the gradient of its own image only.
"""

from __future__ import annotations

import tensorflow as tf


def _per_image_abs_sum(difference: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.abs(tf.reshape(difference, [tf.shape(difference)[0], -1])), axis=1)


def residual_score(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """R(x) = Σ|x − G(z)| over the pixels of each image: [N]."""
    return _per_image_abs_sum(images - reconstructions)


def discrimination_score(image_features: tf.Tensor, reconstruction_features: tf.Tensor
                         ) -> tf.Tensor:
    """D(x) = Σ|f(x) − f(G(z))| over the feature map of each image: [N]."""
    return _per_image_abs_sum(image_features - reconstruction_features)


def anomaly_score(residual: tf.Tensor, discrimination: tf.Tensor,
                  discrimination_weight: float) -> tf.Tensor:
    """A(x) = (1−λ)·R(x) + λ·D(x); also the search loss L(z) per image."""
    return (1.0 - discrimination_weight) * residual + discrimination_weight * discrimination


def anomaly_map(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """|x − G(z)| per pixel: where the defect is."""
    return tf.abs(images - reconstructions)


def discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """Per-example binary cross-entropy: real -> 1, generated -> 0."""
    real = tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(real_logits), real_logits)
    fake = tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(fake_logits), fake_logits)
    return tf.reshape(real + fake, [-1])


def generator_loss(fake_logits: tf.Tensor) -> tf.Tensor:
    """Per-example non-saturating generator loss, −log D(G(z))."""
    return tf.reshape(
        tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(fake_logits), fake_logits), [-1])


def _per_image_mean_square(difference: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(tf.reshape(difference, [tf.shape(difference)[0], -1])),
                          axis=1)


def encoder_terms(images: tf.Tensor, reconstructions: tf.Tensor, image_features: tf.Tensor,
                  reconstruction_features: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """f-AnoGAN's izi_f terms per image: (mean (x − G(E(x)))², mean (f(x) − f(G(E(x))))²).

    Means, not sums, as in Schlegl et al. (2019): κ then weighs the two terms
    independently of the image and feature-map sizes.
    """
    return (_per_image_mean_square(images - reconstructions),
            _per_image_mean_square(image_features - reconstruction_features))


def encoder_loss(image_residual: tf.Tensor, feature_residual: tf.Tensor,
                 feature_weight: float) -> tf.Tensor:
    """izi_f loss per image: image residual + κ·feature residual."""
    return image_residual + feature_weight * feature_residual
