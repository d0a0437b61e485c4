"""Speed of GAN training: the project's trainer (GANTrainer.train_step through `fit`).

    python benchmarks/train_speed.py --base_filters=16 --batch_size=64 --steps=40

Random images, the default training settings (G's moving average, R1), one
warm-up epoch that traces and compiles, then --repeats timed epochs of
--steps updates each. Prints the oneDNN state and the CPU, the median and
spread of images/s, and a final line `train_images_per_s=<median>`.
--jit_compile compiles train_step with XLA (Keras' `compile(jit_compile=True)`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import common  # first: importing ic_anogan sets oneDNN before TensorFlow loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--base_filters", type=int, default=16)
    parser.add_argument("--latent_dim", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="updates per timed epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jit_compile", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from ic_anogan.config import ModelConfig, TrainConfig
    from ic_anogan.models.networks import Generator, build_models
    from ic_anogan.training.gan import GANTrainer, make_optimizers

    config = ModelConfig(args.image_size, args.latent_dim, args.base_filters)
    train_config = TrainConfig()
    generator, discriminator, _ = build_models(config, seed=0)
    average = Generator(config.image_size, config.latent_dim, config.base_filters,
                        name="generator_average")
    trainer = GANTrainer(generator, discriminator, seed=0, ema_generator=average,
                         ema_decay=train_config.ema_decay, r1_gamma=train_config.r1_gamma)
    d_optimizer, g_optimizer = make_optimizers(train_config)
    trainer.compile(d_optimizer=d_optimizer, g_optimizer=g_optimizer,
                    jit_compile=args.jit_compile)
    images = np.random.default_rng(0).uniform(
        -1, 1, (args.batch_size * 8, args.image_size, args.image_size, 1)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(images).repeat().batch(
        args.batch_size, drop_remainder=True).prefetch(2)
    print(f"training: image {args.image_size}, base_filters {args.base_filters}, "
          f"batch {args.batch_size}, {args.steps} updates per epoch, ema and R1 on, "
          f"xla {args.jit_compile}, tf {tf.__version__}")
    print(common.runtime_line(), flush=True)
    trainer.fit(dataset, epochs=1, steps_per_epoch=args.steps, verbose=0)  # traces
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        trainer.fit(dataset, epochs=1, steps_per_epoch=args.steps, verbose=0)
        rates.append(args.batch_size * args.steps / (time.perf_counter() - start))
    median = statistics.median(rates)
    print(f"images/s: median {median:.1f}, min {min(rates):.1f}, max {max(rates):.1f} "
          f"over {args.repeats} epochs")
    print(f"train_images_per_s={median:.3f}")


if __name__ == "__main__":
    main()
