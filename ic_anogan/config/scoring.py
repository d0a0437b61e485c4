"""Settings of a score: the latent search (the map: maps.py; calibration: calibration.py)."""

from __future__ import annotations

import dataclasses
from typing import Optional

from ic_anogan.config.checks import is_finite, require, setting
from ic_anogan.config.modes import DEFAULT_STEPS, SCORING_MODES, Mode


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """How a score is computed: the AnoGAN latent search (Schlegl et al. 2017).

    Attributes:
      mode: one of SCORING_MODES: where the search starts (random or E(x));
        `encoder` takes no steps (steps must be 0, restarts 1).
      steps: Γ, gradient steps on z.
      discrimination_weight: λ in L = (1-λ)·R + λ·D.
      learning_rate: Adam step size on z.
      beta_1, beta_2, epsilon: Adam constants.
      restarts: random starts per image; the start with the lowest final loss wins.
      clip_z: if set, z is clipped to [-clip_z, clip_z] after every step.
      seed: seed of the stateless RNG that draws the starting points.

    Everything here changes the score, so a calibration records all of it; how
    the same score is computed is `SearchRuntime`'s.
    """

    steps: int = setting(500, help="Γ: latent search steps of the 'search' mode.")
    discrimination_weight: float = setting(0.1, help="λ of the search.")
    learning_rate: float = setting(0.05, help="Adam step size on z.")
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    restarts: int = setting(1, help="Random starts per image in the search.")
    clip_z: Optional[float] = setting(None, help="Clip z to [-clip_z, clip_z] during the "
                                      "search.", default_words="no clipping")
    seed: int = setting(0, help="Seed of the search's starting points.")
    mode: str = Mode.SEARCH.value

    def __post_init__(self):
        require(self.mode in SCORING_MODES, "search.mode", f"one of {SCORING_MODES}", self.mode)
        if self.mode == Mode.ENCODER:
            require(self.steps == 0 and self.restarts == 1, "search.mode",
                     "steps=0 and restarts=1 with mode 'encoder' (it scores E(x) "
                     "without a search; use 'encoder_search' to refine it)",
                     f"encoder with steps={self.steps}, restarts={self.restarts}")
        require(isinstance(self.steps, int) and self.steps >= 0, "search.steps",
                 "an integer >= 0", self.steps)
        require(0.0 <= self.discrimination_weight <= 1.0, "search.discrimination_weight",
                 "a number in [0, 1]", self.discrimination_weight)
        require(is_finite(self.learning_rate) and self.learning_rate > 0, "search.learning_rate",
                 "a finite positive number", self.learning_rate)
        require(0 <= self.beta_1 < 1, "search.beta_1", "a number in [0, 1)", self.beta_1)
        require(0 <= self.beta_2 < 1, "search.beta_2", "a number in [0, 1)", self.beta_2)
        require(self.epsilon > 0, "search.epsilon", "a positive number", self.epsilon)
        require(isinstance(self.restarts, int) and self.restarts > 0, "search.restarts",
                 "a positive integer", self.restarts)
        require(self.clip_z is None or (is_finite(self.clip_z) and self.clip_z > 0),
                 "search.clip_z", "a finite positive number or None", self.clip_z)


SCORE_DEFINING = tuple(field.name for field in dataclasses.fields(SearchConfig))


@dataclasses.dataclass(frozen=True)
class SearchRuntime:
    """How a search runs, never what it computes: switches that leave the score as it is
    (to float rounding), so calibrations and exports do not record them.

    Attributes:
      jit_compile: compile the search with XLA.
      fold_batch_norm: evaluate G and f with batch norm folded into the
        convolutions (same function, faster); off runs the Keras layers.
    """

    jit_compile: bool = False
    fold_batch_norm: bool = True


def search_config_for_mode(mode: str, base: Optional[SearchConfig] = None,
                           steps: Optional[int] = None) -> SearchConfig:
    """`base`'s settings (λ, Adam, seed, ...) scoring in `mode`.

    Γ is `steps` if given, else base's Γ when base is already in `mode`, else
    the mode's default; `encoder` always gets Γ = 0 and one start.
    """
    base = base or SearchConfig()
    require(mode in SCORING_MODES, "search.mode", f"one of {SCORING_MODES}", mode)
    if mode == Mode.ENCODER:
        return dataclasses.replace(base, mode=mode, steps=0, restarts=1)
    if steps is None:
        steps = base.steps if base.mode == mode else DEFAULT_STEPS[mode]
    return dataclasses.replace(base, mode=mode, steps=steps)
