"""Scoring modes and image scores: the one source of their names.

Both are `str` enums: a member equals its name as a string, so records,
flags and signatures that hold plain strings compare equal to them, and
JSON writes them as their names.
"""

from __future__ import annotations

import enum


class _Names(str, enum.Enum):
    """A str enum whose str() and format() are its value on every Python version."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__
    __hash__ = str.__hash__


class Mode(_Names):
    """How z is found for scoring (scoring/search.py)."""

    # The study's Γ-step search from random starts.
    SEARCH = "search"
    # z = E(x), one forward pass, no search.
    ENCODER = "encoder"
    # Γ steps of the same search started from E(x).
    ENCODER_SEARCH = "encoder_search"


class ImageScore(_Names):
    """How an image is judged (scoring/anomaly_maps.py)."""

    # A(x) = L(z_Γ), the residual summed over the whole image.
    STUDY = "study"
    # The maximum of the smoothed anomaly map, standardised per pixel by good parts.
    MAP_MAX = "map_max"
    # The mean of the top MapConfig.top_fraction of that map.
    MAP_TOPK = "map_topk"


SCORING_MODES = tuple(mode.value for mode in Mode)
# Γ used when a mode's settings are not given anywhere else; encoder_search's
# was chosen on the synthetic validation split (docs/benchmarks.md, "Image scores").
DEFAULT_STEPS = {Mode.SEARCH.value: 500, Mode.ENCODER.value: 0, Mode.ENCODER_SEARCH.value: 50}

IMAGE_SCORES = tuple(score.value for score in ImageScore)
MAP_SCORES = IMAGE_SCORES[1:]
# Chosen on validation data only (docs/benchmarks.md, "Image scores").
DEFAULT_IMAGE_SCORE = ImageScore.MAP_MAX.value


def default_mode(has_encoder: bool) -> str:
    """The scoring mode used when none is asked for.

    encoder_search when the model has an encoder, as measured in
    docs/benchmarks.md ("Scoring modes"); otherwise the study's search.
    """
    return Mode.ENCODER_SEARCH.value if has_encoder else Mode.SEARCH.value


def map_score_name(image_score: str) -> str:
    """The map score reported as `map_score`: the decision's own when it is a map score,
    else the default map score."""
    return image_score if image_score in MAP_SCORES else DEFAULT_IMAGE_SCORE
