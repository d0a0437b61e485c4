"""A learned comparison of x and G(z) (DRAEM-like), as a candidate map for real_surfaces.py.

A small segmentation network reads the pair (x, G(z)) and says, per pixel,
how likely x differs from its reconstruction there. It is trained on the
model's own good training images only, with synthetic defects pasted in
(Zavrtanik et al. 2021): the surface defects of synthetic_defects.py, and
DRAEM's thresholded-noise masks filled with foreign texture (another good
image, flipped and shifted, or noise) blended in at a random opacity.
G(z) of every pasted image comes from the same search that scores, so the
network learns what "unlike its reconstruction" looks like for this model.
It never sees a real defect.

Its output, a probability map, is then calibrated like every other map
(per-pixel statistics from held-out good images, cross-fitted thresholds).
"""

from __future__ import annotations

import time

import numpy as np

from ic_anogan.data.synthetic_defects import SURFACE_DEFECT_TYPES, paste_defect, smooth_noise


def foreign_patch(rng: np.random.Generator, image: np.ndarray, others: np.ndarray) -> tuple:
    """DRAEM's anomaly: a thresholded-noise mask filled with foreign texture."""
    size = image.shape[0]
    noise = smooth_noise(rng, (size, size), rng.uniform(1.5, 6.0) * size / 64)
    mask = noise > rng.uniform(0.8, 1.8)
    if rng.uniform() < 0.5:
        source = others[rng.integers(len(others))]
        source = np.roll(np.rot90(source, rng.integers(4)), rng.integers(size, size=2), (0, 1))
    else:
        source = 0.5 + 0.15 * smooth_noise(rng, (size, size), rng.uniform(0.5, 3.0))
    opacity = rng.uniform(0.15, 1.0)
    pasted = np.where(mask, (1 - opacity) * image + opacity * source, image)
    return np.clip(pasted, 0, 1), mask


def training_pairs(rng, good: np.ndarray, count: int) -> tuple:
    """`count` images [count, S, S] in [0, 1] (half good) and their masks."""
    kinds = list(SURFACE_DEFECT_TYPES) + ["foreign"]
    images, masks = [], []
    for i in range(count):
        image = good[rng.integers(len(good))]
        if i % 2 == 0:
            images.append(image)
            masks.append(np.zeros_like(image, bool))
            continue
        kind = kinds[rng.integers(len(kinds))]
        pasted, mask = (foreign_patch(rng, image, good) if kind == "foreign"
                        else paste_defect(rng, image, kind))
        images.append(pasted)
        masks.append(mask)
    return np.stack(images).astype(np.float32), np.stack(masks).astype(np.float32)


def build_network(size: int):
    """A small U-Net: (x, G(z), |x − G(z)|) -> per-pixel logit."""
    import keras
    from keras import layers
    inputs = keras.Input((size, size, 3))

    def block(h, filters):
        h = layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        return layers.Conv2D(filters, 3, padding="same", activation="relu")(h)

    e1 = block(inputs, 16)
    e2 = block(layers.MaxPooling2D()(e1), 32)
    e3 = block(layers.MaxPooling2D()(e2), 64)
    d2 = block(layers.Concatenate()([layers.UpSampling2D()(e3), e2]), 32)
    d1 = block(layers.Concatenate()([layers.UpSampling2D()(d2), e1]), 16)
    return keras.Model(inputs, layers.Conv2D(1, 1)(d1))


def network_input(images: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    return np.concatenate([images, reconstructions, np.abs(images - reconstructions)], axis=-1)


def train(scorer, good_images: np.ndarray, count: int = 4000, steps: int = 3000,
          batch: int = 32, seed: int = 0):
    """The comparison network trained on pasted defects of `good_images` [N, S, S, 1] in
    [-1, 1], reconstructed by `scorer` (a SearchScorer). Returns (network, seconds)."""
    import keras
    import tensorflow as tf

    from ic_anogan.data.image_set import ImageSet
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    unit, masks = training_pairs(rng, (good_images[..., 0] + 1) / 2, count)
    images = (unit * 2 - 1)[..., None]
    reconstructions = scorer.score(ImageSet.unlabelled(images), 256).reconstruction
    searched = time.perf_counter() - start
    keras.utils.set_random_seed(seed)
    network = build_network(images.shape[1])
    optimizer = keras.optimizers.Adam(1e-3)
    inputs = network_input(images, reconstructions).astype(np.float32)
    targets = masks[..., None]

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = network(x, training=True)
            probability = tf.sigmoid(logits)
            bce = tf.nn.sigmoid_cross_entropy_with_logits(y, logits)
            # Focal loss (γ = 2): the many easy good pixels stop dominating.
            p_t = y * probability + (1 - y) * (1 - probability)
            loss = tf.reduce_mean(tf.pow(1 - p_t, 2.0) * bce)
        grads = tape.gradient(loss, network.trainable_variables)
        optimizer.apply_gradients(zip(grads, network.trainable_variables))
        return loss

    for i in range(steps):
        rows = rng.integers(len(inputs), size=batch)
        x, y = inputs[rows], targets[rows]
        if rng.uniform() < 0.5:
            x, y = x[:, :, ::-1], y[:, :, ::-1]
        loss = step(tf.constant(np.ascontiguousarray(x)), tf.constant(np.ascontiguousarray(y)))
        if i % 500 == 0:
            print(f"    comparison network step {i}: focal loss {float(loss):.4f}", flush=True)
    seconds = time.perf_counter() - start
    print(f"  comparison network: {count} pasted pairs searched in {searched:.0f} s, "
          f"{steps} steps, {seconds:.0f} s in all", flush=True)
    return network, seconds


def probability_map(network, images: np.ndarray, reconstructions: np.ndarray,
                    batch: int = 256) -> np.ndarray:
    """The network's per-pixel probability [N, S, S, 1]."""
    import tensorflow as tf
    parts = [tf.sigmoid(network(network_input(images[b:b + batch],
                                              reconstructions[b:b + batch]))).numpy()
             for b in range(0, len(images), batch)]
    return np.concatenate(parts).astype(np.float32)
