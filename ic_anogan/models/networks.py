"""DCGAN generator and discriminator (Radford et al. 2016) as used by AnoGAN.

The image size sets the number of stride-2 blocks between a 4x4 map and the
image: 64 -> four blocks, as in the paper. The discriminator is split into a
feature trunk (all convolution blocks; its output is f(x), the layer AnoGAN's
feature-matching term uses) and a one-logit head, so the feature model can
share the discriminator's weights without copying them.
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import layers

from ic_anogan.config import ModelConfig

# BatchNorm as in the reference DCGAN (PyTorch defaults: momentum 0.1 there is
# 0.9 here; epsilon 1e-5).
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def _kernel_init(seed: Optional[int]) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(0.0, 0.02, seed=seed)


def _batch_norm(name: str, seed: Optional[int]) -> layers.BatchNormalization:
    return layers.BatchNormalization(
        momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=name,
        gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02, seed=seed))


def _seed(seed: Optional[int], offset: int) -> Optional[int]:
    return None if seed is None else seed + offset


def _down_blocks(base_filters: int, blocks: int, seed: Optional[int]) -> tuple[list, list]:
    """The stride-2 convolution blocks of D's trunk (and E's, which mirrors it).

    The first block has no batch norm (Radford et al.), so it has a bias;
    `norms[0]` is None.
    """
    convs = [layers.Conv2D(base_filters, 4, strides=2, padding="same", use_bias=True,
                           kernel_initializer=_kernel_init(seed), name="down_conv1")]
    norms = [None]
    for i in range(1, blocks):
        convs.append(layers.Conv2D(
            base_filters * 2 ** i, 4, strides=2, padding="same", use_bias=False,
            kernel_initializer=_kernel_init(_seed(seed, 10 + i)), name=f"down_conv{i + 1}"))
        norms.append(_batch_norm(f"down_norm{i + 1}", _seed(seed, 20 + i)))
    return convs, norms


def _build_down_blocks(convs: list, norms: list, shape: tuple) -> tuple:
    """Builds the blocks for input `shape`; returns the trunk's output shape."""
    for conv, norm in zip(convs, norms):
        conv.build(shape)
        shape = conv.compute_output_shape(shape)
        if norm is not None:
            norm.build(shape)
    return shape


@keras.saving.register_keras_serializable(package="ic_anogan")
class Generator(keras.Model):
    """z [N, latent_dim] -> image [N, S, S, 1] in [-1, 1]."""

    def __init__(self, image_size: int = 64, latent_dim: int = 100,
                 base_filters: int = 64, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        config = ModelConfig(image_size, latent_dim, base_filters)
        self.image_size, self.latent_dim, self.base_filters = (
            image_size, latent_dim, base_filters)
        self.seed = seed
        blocks = config.num_blocks
        top_filters = base_filters * 2 ** (blocks - 1)
        self.project = layers.Dense(4 * 4 * top_filters, use_bias=False,
                                    kernel_initializer=_kernel_init(seed), name="project")
        self.reshape = layers.Reshape((4, 4, top_filters), name="reshape")
        self.project_norm = _batch_norm("project_norm", _seed(seed, 1))
        self.up_convs, self.up_norms = [], []
        for i in range(blocks - 1):
            filters = top_filters // 2 ** (i + 1)
            self.up_convs.append(layers.Conv2DTranspose(
                filters, 4, strides=2, padding="same", use_bias=False,
                kernel_initializer=_kernel_init(_seed(seed, 10 + i)), name=f"up_conv{i + 1}"))
            self.up_norms.append(_batch_norm(f"up_norm{i + 1}", _seed(seed, 20 + i)))
        self.to_image = layers.Conv2DTranspose(
            1, 4, strides=2, padding="same", use_bias=True,
            kernel_initializer=_kernel_init(_seed(seed, 30)), name="to_image")
        self.build((None, latent_dim))

    def build(self, input_shape):
        # Explicit build so weights exist (and can be loaded) before any call.
        shape = tuple(input_shape)
        self.project.build(shape)
        shape = self.reshape.compute_output_shape(self.project.compute_output_shape(shape))
        self.project_norm.build(shape)
        for conv, norm in zip(self.up_convs, self.up_norms):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)
        self.to_image.build(shape)
        self.built = True

    def call(self, z, training=False):
        h = self.reshape(self.project(z))
        h = keras.ops.relu(self.project_norm(h, training=training))
        for conv, norm in zip(self.up_convs, self.up_norms):
            h = keras.ops.relu(norm(conv(h), training=training))
        return keras.ops.tanh(self.to_image(h))

    def get_config(self):
        return {"image_size": self.image_size, "latent_dim": self.latent_dim,
                "base_filters": self.base_filters, "seed": self.seed,
                "name": self.name}


@keras.saving.register_keras_serializable(package="ic_anogan")
class Discriminator(keras.Model):
    """image [N, S, S, 1] -> logit [N, 1]; `features` gives f(x) [N, 4, 4, C]."""

    def __init__(self, image_size: int = 64, base_filters: int = 64,
                 seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        config = ModelConfig(image_size, 1, base_filters)
        self.image_size, self.base_filters, self.seed = image_size, base_filters, seed
        self.convs, self.norms = _down_blocks(base_filters, config.num_blocks, seed)
        self.flatten = layers.Flatten(name="flatten")
        self.logit = layers.Dense(1, kernel_initializer=_kernel_init(_seed(seed, 30)),
                                  name="logit")
        self.build((None, image_size, image_size, 1))

    @property
    def feature_shape(self) -> tuple:
        blocks = len(self.convs)
        return (4, 4, self.base_filters * 2 ** (blocks - 1))

    def build(self, input_shape):
        shape = _build_down_blocks(self.convs, self.norms, tuple(input_shape))
        self.logit.build(self.flatten.compute_output_shape(shape))
        self.built = True

    def features(self, images, training=False):
        """f(x): the output of the last convolution block (after LeakyReLU)."""
        h = images
        for conv, norm in zip(self.convs, self.norms):
            h = conv(h)
            if norm is None:
                # LeakyReLU(0.2) written as max(h, 0.2h): with the fused op here,
                # grappler's remapper tries to fuse Conv2D+BiasAdd+LeakyRelu in
                # the search's gradient loop, fails and logs an error on every
                # trace. Same values and gradients (slope 1 above 0, 0.2 below).
                h = keras.ops.maximum(h, 0.2 * h)
            else:
                h = keras.ops.leaky_relu(norm(h, training=training), negative_slope=0.2)
        return h

    def head(self, features):
        return self.logit(self.flatten(features))

    def call(self, images, training=False):
        return self.head(self.features(images, training=training))

    def get_config(self):
        return {"image_size": self.image_size, "base_filters": self.base_filters,
                "seed": self.seed, "name": self.name}


@keras.saving.register_keras_serializable(package="ic_anogan")
class FeatureExtractor(keras.Model):
    """f(x) as a model of its own, sharing the discriminator's weights."""

    def __init__(self, discriminator: Discriminator, **kwargs):
        super().__init__(**kwargs)
        self.discriminator = discriminator

    def call(self, images, training=False):
        return self.discriminator.features(images, training=training)


@keras.saving.register_keras_serializable(package="ic_anogan")
class Encoder(keras.Model):
    """image [N, S, S, 1] -> z [N, latent_dim]: f-AnoGAN's izi_f encoder.

    The discriminator's trunk (same blocks, filters and activations), then a
    linear layer to z. The output is not squashed: z is N(0, 1) here, not
    U(-1, 1) as in f-AnoGAN, so a tanh would forbid the tails G was trained on.
    """

    def __init__(self, image_size: int = 64, latent_dim: int = 100, base_filters: int = 64,
                 seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        config = ModelConfig(image_size, latent_dim, base_filters)
        self.image_size, self.latent_dim, self.base_filters = (
            image_size, latent_dim, base_filters)
        self.seed = seed
        self.convs, self.norms = _down_blocks(base_filters, config.num_blocks, seed)
        self.flatten = layers.Flatten(name="flatten")
        self.to_latent = layers.Dense(latent_dim, kernel_initializer=_kernel_init(_seed(seed, 30)),
                                      name="to_latent")
        self.build((None, image_size, image_size, 1))

    def build(self, input_shape):
        shape = _build_down_blocks(self.convs, self.norms, tuple(input_shape))
        self.to_latent.build(self.flatten.compute_output_shape(shape))
        self.built = True

    def call(self, images, training=False):
        h = images
        for conv, norm in zip(self.convs, self.norms):
            h = conv(h)
            if norm is not None:
                h = norm(h, training=training)
            h = keras.ops.leaky_relu(h, negative_slope=0.2)
        return self.to_latent(self.flatten(h))

    def get_config(self):
        return {"image_size": self.image_size, "latent_dim": self.latent_dim,
                "base_filters": self.base_filters, "seed": self.seed, "name": self.name}


def build_encoder(config: ModelConfig, seed: Optional[int] = None) -> Encoder:
    """Builds E for `config`, initialised N(0, 0.02) from `seed`."""
    return Encoder(config.image_size, config.latent_dim, config.base_filters,
                   seed=_seed(seed, 2000), name="encoder")


def build_models(config: ModelConfig, seed: Optional[int] = None
                 ) -> tuple[Generator, Discriminator, FeatureExtractor]:
    """Builds G, D and f(.) for `config`, initialised N(0, 0.02) from `seed`."""
    generator = Generator(config.image_size, config.latent_dim, config.base_filters,
                          seed=seed, name="generator")
    discriminator = Discriminator(config.image_size, config.base_filters,
                                  seed=_seed(seed, 1000), name="discriminator")
    return generator, discriminator, FeatureExtractor(discriminator, name="features")
