"""`ScoreOutputs`: what every scorer returns, and the names it goes by outside Python.

The in-process search (scorer.SearchScorer) and an export (serving/client.py)
return the same type, so one report reads both. The names a SavedModel's
signatures return and the columns of scores.csv are derived from its fields,
so the three cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from ic_anogan import config as config_lib
from ic_anogan.config import ImageScore


def _field(search: bool = False, served: Optional[str] = None, csv: Optional[str] = None,
           optional: bool = False, map_output: bool = False):
    """A field and where it goes: `search`, returned by the in-graph search;
    `served`, the name a SavedModel signature returns it under; `csv`, its
    scores.csv column; `map_output`, present only with map statistics."""
    metadata = {"search": search, "served": served, "csv": csv, "map": map_output}
    if optional:
        return dataclasses.field(default=None, metadata=metadata)
    return dataclasses.field(metadata=metadata)


# Keyword-only: the fields are in their served order, optional ones among them.
@dataclasses.dataclass(kw_only=True)
class ScoreOutputs:
    """Scores and maps of N images, as numpy arrays.

    Attributes:
      anomaly_score: [N] the study's A(x) = L(z_Γ).
      residual_score, discrimination_score: [N] its two terms.
      is_anomaly: [N] bool, the export's own decision (None in process,
        where the report decides from a threshold).
      reconstruction: [N, S, S, 1] G(z_Γ) in [-1, 1].
      anomaly_map: [N, S, S, 1] |x − G(z_Γ)|.
      latent: [N, latent_dim] z_Γ (None from an export).
      map_scores: image scores from the standardised map, by name (map_max,
        map_topk; an export serves the one that decides); None without the
        good parts' map statistics, as are the other map fields.
      map_x, map_y: [N] where the standardised map peaks.
      standardised_map: [N, S, S, 1] the map standardised per pixel by good parts.
      defect_mask: [N, S, S, 1] where it exceeds the good parts' pixel threshold.
    """

    anomaly_score: np.ndarray = _field(search=True, served="anomaly_score", csv="anomaly_score")
    residual_score: np.ndarray = _field(search=True, served="residual_score",
                                        csv="residual_score")
    discrimination_score: np.ndarray = _field(search=True, served="discrimination_score",
                                              csv="discrimination_score")
    is_anomaly: Optional[np.ndarray] = _field(served="is_anomaly", csv="is_anomaly",
                                              optional=True)
    reconstruction: np.ndarray = _field(search=True, served="reconstruction")
    anomaly_map: np.ndarray = _field(search=True, served="anomaly_map")
    latent: Optional[np.ndarray] = _field(search=True, optional=True)
    map_scores: Optional[dict] = _field(served="map_score", csv="map_score", optional=True,
                                        map_output=True)
    map_x: Optional[np.ndarray] = _field(served="map_x", csv="map_x", optional=True,
                                         map_output=True)
    map_y: Optional[np.ndarray] = _field(served="map_y", csv="map_y", optional=True,
                                         map_output=True)
    standardised_map: Optional[np.ndarray] = _field(served="standardised_map", optional=True,
                                                    map_output=True)
    defect_mask: Optional[np.ndarray] = _field(served="defect_mask", optional=True,
                                               map_output=True)

    def __len__(self) -> int:
        return len(self.anomaly_score)

    @property
    def has_maps(self) -> bool:
        return self.map_scores is not None

    def available_scores(self) -> list:
        """The image scores these outputs can be judged by, in IMAGE_SCORES order."""
        return [name for name in config_lib.IMAGE_SCORES
                if name == ImageScore.STUDY or name in (self.map_scores or {})]

    def score(self, image_score: str) -> np.ndarray:
        """The per-image values of `image_score`.

        Raises:
          ValueError: unknown score, or a map score without map statistics.
        """
        if image_score not in config_lib.IMAGE_SCORES:
            raise ValueError(f"image_score={image_score!r}: expected one of "
                             f"{config_lib.IMAGE_SCORES}")
        if image_score == ImageScore.STUDY:
            return np.asarray(self.anomaly_score)
        if image_score not in (self.map_scores or {}):
            raise ValueError(f"image_score={image_score!r} needs the good parts' map "
                             "statistics, which this model has not calibrated; add them by "
                             "recalibrating on good images, or use image_score 'study'")
        return np.asarray(self.map_scores[image_score])

    @classmethod
    def from_search(cls, outputs: dict) -> "ScoreOutputs":
        """From the in-graph search's dict of tensors (keys: SEARCH_OUTPUTS)."""
        return cls(**{name: np.asarray(outputs[name]) for name in SEARCH_OUTPUTS})

    @staticmethod
    def concatenate(parts: Sequence["ScoreOutputs"]) -> "ScoreOutputs":
        """The outputs of consecutive batches as one."""
        values = {}
        for field in dataclasses.fields(ScoreOutputs):
            column = [getattr(p, field.name) for p in parts]
            if column[0] is None:
                values[field.name] = None
            elif isinstance(column[0], dict):
                values[field.name] = {k: np.concatenate([c[k] for c in column])
                                      for k in column[0]}
            else:
                values[field.name] = np.concatenate(column)
        return ScoreOutputs(**values)


def _names(key: str, map_output: bool) -> tuple:
    return tuple(f.metadata[key] for f in dataclasses.fields(ScoreOutputs)
                 if f.metadata[key] and f.metadata["map"] == map_output)


# What the in-graph search returns (search.LatentSearch.score).
SEARCH_OUTPUTS = tuple(f.name for f in dataclasses.fields(ScoreOutputs) if f.metadata["search"])
# What every scoring signature of an export returns; a mode exported with map
# statistics also returns SERVED_MAP_OUTPUTS.
SERVED_OUTPUTS = _names("served", False)
SERVED_MAP_OUTPUTS = _names("served", True)
# scores.csv: the image's id, label and type, then its scores.
CSV_COLUMNS = ("path", "label", "defect_type") + _names("csv", False) + _names("csv", True)
