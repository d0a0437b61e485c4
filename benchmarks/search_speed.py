"""Speed of the AnoGAN latent search, and this machine's ceiling for the same work.

    python benchmarks/search_speed.py --image_size=64 --base_filters=64 --batch_size=64 --steps=20

Random N(0, 0.02) weights (speed does not depend on training). Prints the
median and spread of img·steps/s over --repeats timed searches after a
warm-up, then the ceiling, then a final line `img_steps_per_s=<median>`.

The ceiling: every dense / convolution / transposed convolution of G and of
the feature trunk f is timed alone at the search's batch shape, forward and
input-gradient (the two passes a search step needs; no weight gradients),
each in its own compiled loop. Their summed time is what one search step
cannot beat on this machine with these kernels; FLOPs are counted from the
layer shapes as 2·MACs (conv: H_out·W_out·C_in·C_out·k², transposed conv:
H_in·W_in·C_in·C_out·k², dense: in·out), the convention of
../shared/bench/arch.md. The search's fraction of the ceiling is
(ceiling seconds per step) / (search seconds per step).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import common  # first: importing ic_anogan sets oneDNN before TensorFlow loads
import numpy as np
import tensorflow as tf

from ic_anogan.config import ModelConfig, SearchConfig, SearchRuntime
from ic_anogan.models.networks import build_models
from ic_anogan.scoring.search import LatentSearch


def layer_shapes(config: ModelConfig) -> list:
    """(kind, input shape [H, W, C], output channels) for every weighted layer of G and f."""
    layers = [("dense", (1, 1, config.latent_dim),
               4 * 4 * config.base_filters * 2 ** (config.num_blocks - 1))]
    channels = config.base_filters * 2 ** (config.num_blocks - 1)
    size = 4
    for i in range(config.num_blocks):
        out = 1 if i == config.num_blocks - 1 else channels // 2
        layers.append(("conv_transpose", (size, size, channels), out))
        channels, size = out, size * 2
    channels, size = 1, config.image_size
    for i in range(config.num_blocks):
        out = config.base_filters * 2 ** i
        layers.append(("conv", (size, size, channels), out))
        channels, size = out, size // 2
    return layers


def layer_macs(kind: str, shape: tuple, out_channels: int) -> int:
    h, w, c = shape
    if kind == "dense":
        return c * out_channels
    if kind == "conv_transpose":
        return h * w * c * out_channels * 16
    return (h // 2) * (w // 2) * c * out_channels * 16


def ceiling(config: ModelConfig, batch: int, inner: int = 20, repeats: int = 3) -> dict:
    """Seconds per step and GFLOP/s of the layers alone (forward + input gradient)."""
    total_seconds, total_flop = 0.0, 0.0
    rows = []
    for kind, (h, w, c), out in layer_shapes(config):
        x = tf.random.normal([batch, h, w, c])
        if kind == "dense":
            kernel = tf.random.normal([c, out]) * 0.02
            x = tf.reshape(x, [batch, c])
            forward = lambda v, k=kernel: tf.matmul(v, k)  # noqa: E731
        elif kind == "conv_transpose":
            kernel = tf.random.normal([4, 4, out, c]) * 0.02
            forward = (lambda v, k=kernel, o=out, hh=h, ww=w: tf.nn.conv2d_transpose(  # noqa: E731
                v, k, [tf.shape(v)[0], 2 * hh, 2 * ww, o], 2, padding="SAME"))
        else:
            kernel = tf.random.normal([4, 4, c, out]) * 0.02
            forward = lambda v, k=kernel: tf.nn.conv2d(v, k, 2, padding="SAME")  # noqa: E731

        @tf.function(jit_compile=False)
        def loop(v, forward=forward):
            def body(i, acc):
                with tf.GradientTape() as tape:
                    tape.watch(v)
                    y = forward(v + acc)
                grad = tape.gradient(y, v)  # input gradient only
                return i + 1, acc + 1e-30 * tf.reduce_sum(grad)
            return tf.while_loop(lambda i, _: i < inner, body, (0, tf.constant(0.0)))[1]

        seconds = common.median_seconds(lambda: loop(x).numpy(), repeats)[1] / inner
        flop = 2 * 2 * layer_macs(kind, (h, w, c), out) * batch  # forward + input grad
        rows.append((kind, (h, w, c), out, seconds, flop / seconds / 1e9))
        total_seconds += seconds
        total_flop += flop
    return {"seconds_per_step": total_seconds, "flop_per_step": total_flop,
            "gflops": total_flop / total_seconds / 1e9, "layers": rows}


def search_rate(search, images, repeats: int) -> list:
    search.score(images[:len(images)])  # trace + warm-up
    rates = []
    steps = search.config.steps
    for _ in range(repeats):
        start = time.perf_counter()
        search.score(images)["anomaly_score"].numpy()
        rates.append(len(images) * steps / (time.perf_counter() - start))
    return rates


def saved_model_rate(path: str, images, repeats: int, steps: int) -> list:
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["score_float"]
    fn(images=tf.constant(images))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(images=tf.constant(images))["anomaly_score"].numpy()
        rates.append(len(images) * steps / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--base_filters", type=int, default=64)
    parser.add_argument("--latent_dim", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jit_compile", action="store_true")
    parser.add_argument("--no_fold", action="store_true",
                        help="run the Keras layers with batch norm instead of the folded forms")
    parser.add_argument("--saved_model", default=None,
                        help="measure an export (EXPORT_DIR/<version>) instead of the library; "
                             "its own steps apply (pass the same --steps)")
    parser.add_argument("--no_ceiling", action="store_true")
    parser.add_argument("--inter_op_threads", type=int, default=0,
                        help="TF inter-op threads (0 = TF's default)")
    parser.add_argument("--intra_op_threads", type=int, default=0,
                        help="TF intra-op threads (0 = TF's default: all cores)")
    args = parser.parse_args()
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)

    config = ModelConfig(args.image_size, args.latent_dim, args.base_filters)
    images = np.random.default_rng(0).uniform(
        -1, 1, (args.batch_size, args.image_size, args.image_size, 1)).astype(np.float32)
    print(f"search: image {args.image_size}, base_filters {args.base_filters}, "
          f"latent {args.latent_dim}, batch {args.batch_size}, steps {args.steps}, "
          f"restarts {args.restarts}, xla {args.jit_compile}, fold_bn {not args.no_fold}, "
          f"threads intra={tf.config.threading.get_intra_op_parallelism_threads()} "
          f"inter={tf.config.threading.get_inter_op_parallelism_threads()} "
          f"cpus={os.cpu_count()}, tf {tf.__version__}")
    print(common.runtime_line(), flush=True)
    if args.saved_model:
        rates = saved_model_rate(args.saved_model, images, args.repeats, args.steps)
    else:
        generator, _, features = build_models(config, seed=0)
        search = LatentSearch(generator, features, SearchConfig(
            steps=args.steps, restarts=args.restarts), runtime=SearchRuntime(
                jit_compile=args.jit_compile, fold_batch_norm=not args.no_fold))
        rates = search_rate(search, images, args.repeats)
    # Restarts multiply the work: report searches (image·restart·steps) per second too.
    median = statistics.median(rates)
    print(f"img_steps/s: median {median:.1f}, min {min(rates):.1f}, max {max(rates):.1f} "
          f"over {len(rates)} repeats"
          + (f"; {median * args.restarts:.1f} search·steps/s with {args.restarts} restarts"
             if args.restarts > 1 else ""))
    if not args.no_ceiling:
        result = ceiling(config, args.batch_size * args.restarts)
        per_img_step = result["flop_per_step"] / (args.batch_size * args.restarts)
        print(f"work per image·step: {per_img_step / 1e6:.1f} MFLOP (2 x MACs, forward + "
              "input gradient of G and f)")
        for kind, shape, out, seconds, gflops in result["layers"]:
            print(f"  {kind:15s} in {str(shape):16s} out_c {out:5d}: {seconds * 1e3:8.3f} ms "
                  f"{gflops:8.1f} GFLOP/s")
        ceiling_rate = args.batch_size / result["seconds_per_step"]
        achieved_gflops = median * args.restarts * per_img_step / 1e9
        print(f"ceiling: {result['gflops']:.1f} GFLOP/s = {ceiling_rate:.1f} img_steps/s; "
              f"search achieves {achieved_gflops:.1f} GFLOP/s = "
              f"{100 * median / ceiling_rate:.1f}% of the ceiling")
    print(f"img_steps_per_s={median:.3f}")


if __name__ == "__main__":
    main()
