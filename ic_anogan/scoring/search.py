"""The AnoGAN latent search: batched, stateless, in-graph.

Schlegl et al. (2017) score a query image x by looking for the latent z whose
generated image G(z) is closest to x, with G and D frozen:

    L(z) = (1-λ)·Σ|x − G(z)| + λ·Σ|f(x) − f(G(z))|,  f = D's last conv block,

minimised by Γ gradient steps. The anomaly score is L at the last z; the
per-pixel |x − G(z_Γ)| shows where the defect is.

Design, in the order the choices were forced:

* The whole search is one `tf.function`; z, Adam's two moments and the step
  counter are loop tensors of a `tf.while_loop`. No Python runs per step, the
  graph does not grow with Γ, and memory is constant in Γ: Γ = 100000 costs
  time, nothing else.
* Nothing is stored on the module between calls: no `tf.Variable`, no Keras
  optimizer. Adam is written out. Concurrent calls (TF Serving answers
  requests in parallel) therefore share no state, and the same image always
  gets the same score.
* A batch of N images is searched at once, which is what makes the search fast
  on any device. The loss is the *sum* of the per-image losses, so each z
  receives only its own image's gradient, Adam is element-wise, and batch norm
  runs in inference mode: an image's score does not depend on its batch.
* Starting points come from a stateless RNG with a fixed seed and are the
  same for every image (restart r of any image starts at z0[r]); an image's
  result therefore does not depend on its position in a batch either.
* Restarts: each image is searched from R starting points side by side (the
  batch holds N·R searches); the start with the lowest final loss wins. A good
  image left badly reconstructed by an unlucky start is one cause of the
  overlap between good and defect scores that the study reports.
* Modes (SearchConfig.mode). `search` is the study's method: random starts.
  `encoder_search` starts restart 0 of every image at E(x), the encoder's
  guess (training/encoder.py), and restarts 1..R-1 at the random starts 0..R-2
  of `search`; so with R = 2 it holds the whole single-start search as its
  second candidate and, keeping the lower loss, can only do better. Its
  starting points stay candidates at the end too, so it never scores worse
  than `encoder` on the loss, however Adam moves. `encoder`
  is `encoder_search` with Γ = 0: the score at z = E(x), one forward pass of
  E, G and f, through the very same code.
* Long searches run in chunks: `start` → `advance` (k steps) … → `finish`,
  carrying the state between chunks, so a caller can show progress and stop
  cleanly. `score` does all Γ steps in one call; it is what the SavedModel
  serves. Chunked and one-piece searches give the same numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import tensorflow as tf

from ic_anogan.config import Mode, SearchConfig, SearchRuntime
from ic_anogan.models import folded, losses
from ic_anogan.models.model_dir import ModelDirError
from ic_anogan.models.networks import Encoder, FeatureExtractor, Generator


@dataclasses.dataclass
class SearchState:
    """Loop state between chunks: z, Adam moments and the steps taken.

    Tensors are [N·R, latent_dim], image-major (row n·R + r is restart r of image n).
    """

    z: tf.Tensor
    first_moment: tf.Tensor
    second_moment: tf.Tensor
    step: tf.Tensor  # int32 scalar


class LatentSearch(tf.Module):
    """Scores batches of images by the AnoGAN latent search."""

    def __init__(self, generator: Generator, features: FeatureExtractor,
                 config: SearchConfig, encoder: Optional[Encoder] = None,
                 name: Optional[str] = None, runtime: SearchRuntime = SearchRuntime()):
        super().__init__(name=name)
        if config.mode != Mode.SEARCH and encoder is None:
            raise ModelDirError(f"mode={config.mode!r} needs an encoder and this model has none; "
                             "train the model with an encoder, or use mode 'search'")
        self.generator = generator
        self.features = features
        self.encoder = encoder if config.mode != Mode.SEARCH else None
        self.config = config
        self.runtime = runtime
        self.image_size = generator.image_size
        self.latent_dim = generator.latent_dim
        image_spec = tf.TensorSpec([None, self.image_size, self.image_size, 1], tf.float32)
        latent_spec = tf.TensorSpec([None, self.latent_dim], tf.float32)
        step_spec = tf.TensorSpec([], tf.int32)
        jit = runtime.jit_compile
        self._start = tf.function(self._start_impl, input_signature=[image_spec],
                                  jit_compile=jit)
        self._advance = tf.function(
            self._advance_impl, jit_compile=jit,
            input_signature=[image_spec, latent_spec, latent_spec, latent_spec, step_spec,
                             step_spec])
        self._finish = tf.function(self._finish_impl, input_signature=[image_spec, latent_spec],
                                   jit_compile=jit)
        self._score = tf.function(self._score_impl, input_signature=[image_spec],
                                  jit_compile=jit)

    # -- the pieces, as graph code --------------------------------------------

    def initial_latents(self, count: Optional[int] = None) -> tf.Tensor:
        """The first `count` (default R) random starts [count, latent_dim], from the seed."""
        # One stream per restart, so restart r is the same point whatever R is:
        # adding restarts can only add candidates, never change the first one.
        count = self.config.restarts if count is None else count
        z0 = tf.stack([tf.random.stateless_normal([self.latent_dim], seed=[self.config.seed, r])
                       for r in range(count)])
        return self._clip(z0)

    def encoded_latents(self, images: tf.Tensor) -> tf.Tensor:
        """E(x) [N, latent_dim] (inference mode, BN folded like G and f), clipped like every z."""
        if self.runtime.fold_batch_norm:
            return self._clip(folded.fold_encoder(self.encoder)(images))
        return self._clip(self.encoder(images, training=False))

    def _clip(self, z: tf.Tensor) -> tf.Tensor:
        if self.config.clip_z is None:
            return z
        return tf.clip_by_value(z, -self.config.clip_z, self.config.clip_z)

    def _repeat(self, tensor: tf.Tensor) -> tf.Tensor:
        """Each image's rows repeated R times, image-major, to match z."""
        if self.config.restarts == 1:
            return tensor
        return tf.repeat(tensor, self.config.restarts, axis=0)

    def networks(self) -> tuple:
        """(G, f) as the search evaluates them: frozen, batch norm in inference mode.

        With `fold_batch_norm` the BN layers are folded into the convolutions
        (folded.py): the same functions, fewer passes over the activations.
        Called once per graph call, outside the step loop.
        """
        if self.runtime.fold_batch_norm:
            return (folded.fold_generator(self.generator),
                    folded.fold_features(self.features.discriminator))
        return (lambda z: self.generator(z, training=False),
                lambda x: self.features(x, training=False))

    def per_image_terms(self, images: tf.Tensor, image_features: tf.Tensor, z: tf.Tensor,
                        networks: Optional[tuple] = None):
        """(anomaly, residual, discrimination, reconstruction) at z; one row per z."""
        generate, features = networks or self.networks()
        reconstruction = generate(z)
        residual = losses.residual_score(images, reconstruction)
        discrimination = losses.discrimination_score(image_features, features(reconstruction))
        anomaly = losses.anomaly_score(residual, discrimination,
                                       self.config.discrimination_weight)
        return anomaly, residual, discrimination, reconstruction

    def _start_impl(self, images):
        batch = tf.shape(images)[0]
        restarts = self.config.restarts
        if self.encoder is None:
            z = tf.tile(self.initial_latents(), [batch, 1])
        elif restarts == 1:
            z = self.encoded_latents(images)
        else:
            # Image-major rows: E(x_n), then the random starts 0..R-2.
            guesses = self.encoded_latents(images)[:, None, :]
            random = tf.tile(self.initial_latents(restarts - 1)[None], [batch, 1, 1])
            z = tf.reshape(tf.concat([guesses, random], axis=1), [-1, self.latent_dim])
        zeros = tf.zeros_like(z)
        return z, zeros, zeros, tf.constant(0, tf.int32)

    def _advance_impl(self, images, z, first_moment, second_moment, step, num_steps):
        c = self.config
        networks = self.networks()
        targets = self._repeat(images)
        target_features = networks[1](targets)
        beta_1, beta_2 = tf.constant(c.beta_1, tf.float32), tf.constant(c.beta_2, tf.float32)

        def body(i, z, m, v):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(z)
                anomaly = self.per_image_terms(targets, target_features, z, networks)[0]
                # Summed, not averaged: every z gets its own image's gradient.
                total = tf.reduce_sum(anomaly)
            gradient = tape.gradient(total, z)
            t = tf.cast(step + i + 1, tf.float32)
            m = beta_1 * m + (1.0 - beta_1) * gradient
            v = beta_2 * v + (1.0 - beta_2) * tf.square(gradient)
            m_hat = m / (1.0 - tf.pow(beta_1, t))
            v_hat = v / (1.0 - tf.pow(beta_2, t))
            z = self._clip(z - c.learning_rate * m_hat / (tf.sqrt(v_hat) + c.epsilon))
            return i + 1, z, m, v

        _, z, first_moment, second_moment = tf.while_loop(
            lambda i, *_: i < num_steps, body,
            (tf.constant(0, tf.int32), z, first_moment, second_moment),
            parallel_iterations=1)
        return z, first_moment, second_moment, step + num_steps

    def _finish_impl(self, images, z):
        restarts = self.config.restarts
        networks = self.networks()
        targets = self._repeat(images)
        target_features = networks[1](targets)
        anomaly, residual, discrimination, reconstruction = self.per_image_terms(
            targets, target_features, z, networks)
        candidates = restarts
        if self.encoder is not None and self.config.steps > 0:
            # encoder_search also keeps its starting points as candidates: a
            # search that overshoots can then never score worse than the
            # encoder's guess alone. Costs one more forward pass, not a step.
            start = self._start_impl(images)[0]
            at_start = self.per_image_terms(targets, target_features, start, networks)
            per_image = lambda a, b: tf.reshape(  # noqa: E731
                tf.concat([tf.reshape(a, [-1, restarts, *a.shape[1:]]),
                           tf.reshape(b, [-1, restarts, *b.shape[1:]])], axis=1),
                [-1, *a.shape[1:]])
            anomaly, residual, discrimination, reconstruction = (
                per_image(a, b) for a, b in zip((anomaly, residual, discrimination,
                                                 reconstruction), at_start))
            z = per_image(z, start)
            candidates = 2 * restarts
        # Keep, per image, the candidate with the lowest final loss.
        best = tf.argmin(tf.reshape(anomaly, [-1, candidates]), axis=1, output_type=tf.int32)
        rows = tf.range(tf.shape(images)[0]) * candidates + best
        reconstruction = tf.gather(reconstruction, rows)
        return {
            "anomaly_score": tf.gather(anomaly, rows),
            "residual_score": tf.gather(residual, rows),
            "discrimination_score": tf.gather(discrimination, rows),
            "reconstruction": reconstruction,
            "anomaly_map": losses.anomaly_map(images, reconstruction),
            "latent": tf.gather(z, rows),
        }

    def graph_score(self, images: tf.Tensor) -> dict:
        """`score` as graph code, to be called inside another tf.function (export)."""
        return self._score_impl(images)

    def _score_impl(self, images):
        z, m, v, step = self._start_impl(images)
        if self.config.steps > 0:  # Γ = 0 (encoder mode): not even the loop's set-up
            z, _, _, _ = self._advance_impl(images, z, m, v, step,
                                            tf.constant(self.config.steps, tf.int32))
        return self._finish_impl(images, z)

    # -- the public API ---------------------------------------------------------

    def score(self, images) -> dict:
        """Runs all Γ steps on a batch [N, S, S, 1] in [-1, 1] in one graph call.

        Returns:
          dict of tensors, keyed by outputs.SEARCH_OUTPUTS: anomaly_score,
          residual_score, discrimination_score [N]; reconstruction and
          anomaly_map [N, S, S, 1]; latent [N, latent_dim].
        """
        return self._score(tf.convert_to_tensor(images, tf.float32))

    def start(self, images) -> SearchState:
        """The state before the first step."""
        return SearchState(*self._start(tf.convert_to_tensor(images, tf.float32)))

    def advance(self, images, state: SearchState, num_steps: int) -> SearchState:
        """Takes `num_steps` more Adam steps from `state`."""
        return SearchState(*self._advance(tf.convert_to_tensor(images, tf.float32), state.z,
                                          state.first_moment, state.second_moment,
                                          state.step, tf.constant(num_steps, tf.int32)))

    def finish(self, images, state: SearchState) -> dict:
        """Scores at the state's z (best restart per image)."""
        return self._finish(tf.convert_to_tensor(images, tf.float32), state.z)

    def score_in_chunks(self, images, chunk_steps: int,
                        on_chunk: Optional[Callable[[int], None]] = None) -> dict:
        """Like `score`, in chunks of `chunk_steps`; calls on_chunk(steps_done) after each.

        A KeyboardInterrupt raised from `on_chunk` or between chunks stops the
        search cleanly; nothing is left half-updated.
        """
        if chunk_steps <= 0:
            raise ValueError(f"chunk_steps must be positive, got {chunk_steps}")
        images = tf.convert_to_tensor(images, tf.float32)
        state = self.start(images)
        done = 0
        while done < self.config.steps:
            steps = min(chunk_steps, self.config.steps - done)
            state = self.advance(images, state, steps)
            done += steps
            if on_chunk is not None:
                on_chunk(done)
        return self.finish(images, state)
