"""Inference-only G and f with batch norm folded into the convolutions.

During the latent search G and D are frozen and batch norm runs on its moving
statistics, so every BN layer is a fixed per-channel affine map,
y = γ·(x − μ)/√(σ² + ε) + β. Folding it into the preceding convolution
(kernel scaled per output channel, plus a bias) gives the same function with
two fewer passes over every activation tensor, forward and backward. On a CPU,
where those element-wise passes cost as much as the small convolutions, the
search gets markedly faster (see README, "Speed").

The folded weights are computed from the models' variables each time
`fold_*` is called (once per search call, outside the step loop), so a
SavedModel still holds the original variables and nothing is baked twice.
The math is the Keras layers' own, re-expressed; tests check the folded
forms against the Keras models.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from ic_anogan.models.networks import Discriminator, Encoder, Generator


def _scale_shift(norm) -> tuple[tf.Tensor, tf.Tensor]:
    """(scale, shift) with BN(x) = scale·x + shift in inference mode."""
    scale = norm.gamma * tf.math.rsqrt(norm.moving_variance + norm.epsilon)
    return scale, norm.beta - norm.moving_mean * scale


def _value(variable) -> tf.Tensor:
    return tf.convert_to_tensor(variable)


def fold_generator(generator: Generator) -> Callable[[tf.Tensor], tf.Tensor]:
    """Returns z -> G(z) (inference mode) with every BN folded into its layer."""
    scale, shift = _scale_shift(generator.project_norm)
    channels = int(scale.shape[0])
    # The dense output is reshaped to [4, 4, C] (channel fastest), so the
    # per-channel scale repeats 16 times along the dense output axis.
    project_kernel = _value(generator.project.kernel) * tf.tile(scale, [16])
    project_bias = tf.tile(shift, [16])
    ups = []
    for conv, norm in zip(generator.up_convs, generator.up_norms):
        s, b = _scale_shift(norm)
        # Conv2DTranspose kernels are [k, k, out, in]: scale the out axis.
        ups.append((_value(conv.kernel) * s[None, None, :, None], b))
    last_kernel = _value(generator.to_image.kernel)
    last_bias = _value(generator.to_image.bias)

    def forward(z: tf.Tensor) -> tf.Tensor:
        h = tf.nn.relu(tf.matmul(z, project_kernel) + project_bias)
        h = tf.reshape(h, [-1, 4, 4, channels])
        for kernel, bias in ups:
            h = tf.nn.relu(tf.nn.bias_add(_transpose_conv(h, kernel), bias))
        return tf.tanh(tf.nn.bias_add(_transpose_conv(h, last_kernel), last_bias))

    return forward


def _transpose_conv(h: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """4x4, stride 2, 'same' transposed convolution: doubles height and width."""
    shape = tf.shape(h)
    size = h.shape[1]
    output_shape = tf.stack([shape[0], 2 * size, 2 * size, kernel.shape[2]])
    return tf.nn.conv2d_transpose(h, kernel, output_shape, strides=2, padding="SAME")


def fold_features(discriminator: Discriminator | Encoder) -> Callable[[tf.Tensor], tf.Tensor]:
    """Returns x -> f(x) (inference mode) with every BN folded into its convolution.

    The encoder's trunk has the same blocks (`convs`, `norms`), so this folds it too.
    """
    layers = []
    for conv, norm in zip(discriminator.convs, discriminator.norms):
        kernel = _value(conv.kernel)
        if norm is None:
            layers.append((kernel, _value(conv.bias)))
        else:
            s, b = _scale_shift(norm)
            layers.append((kernel * s[None, None, None, :], b))

    def forward(images: tf.Tensor) -> tf.Tensor:
        h = images
        for kernel, bias in layers:
            h = tf.nn.bias_add(tf.nn.conv2d(h, kernel, strides=2, padding="SAME"), bias)
            # LeakyReLU(0.2) as max(h, 0.2h): why, see Discriminator.features.
            h = tf.maximum(h, 0.2 * h)
        return h

    return forward


def fold_encoder(encoder: Encoder) -> Callable[[tf.Tensor], tf.Tensor]:
    """Returns x -> E(x) (inference mode): the folded trunk, then the linear layer to z."""
    trunk = fold_features(encoder)
    kernel, bias = _value(encoder.to_latent.kernel), _value(encoder.to_latent.bias)

    def forward(images: tf.Tensor) -> tf.Tensor:
        h = trunk(images)
        return tf.matmul(tf.reshape(h, [tf.shape(h)[0], -1]), kernel) + bias

    return forward
