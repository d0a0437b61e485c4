"""Scoring through an exported SavedModel, as a TF Serving client would.

`ExportedModel` loads an export and reads its baked-in settings;
`ExportedScorer` is the `scoring.Scorer` of one of its modes, so the same
report can be produced from the artefact that is deployed
(the score command with an export). It needs signatures.py, not the exporter
or the trainer.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import tensorflow as tf

from ic_anogan import config as config_lib
from ic_anogan.config import ImageScore, Mode, SearchConfig
from ic_anogan.data import preprocessing
from ic_anogan.data.image_set import ImageSet
from ic_anogan.scoring.map_statistics import MapStatistics
from ic_anogan.scoring.outputs import ScoreOutputs
from ic_anogan.scoring.scorer import Progress, score_in_batches
from ic_anogan.serving.signatures import (ExportError, default_signature, graph_decodable,
                                          mode_signature, read_settings)


def _check_version_folder(path: str) -> None:
    """Refuses anything but a version folder holding saved_model.pb, saying what to give."""
    if not os.path.isdir(path):
        raise ExportError(f"{path}: SavedModel folder not found (expected EXPORT_DIR/<version>)")
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return
    versions = sorted((int(d) for d in os.listdir(path)
                       if d.isdigit() and os.path.exists(os.path.join(path, d, "saved_model.pb"))))
    if versions:
        newest = os.path.join(path, str(versions[-1]))
        raise ExportError(f"{path}: an export base, not a version folder; give {newest} (the "
                          f"newest of versions {', '.join(map(str, versions))})",
                          remedy={"score.saved_model": newest})
    raise ExportError(f"{path}: no saved_model.pb; expected a version folder an export wrote "
                      "(EXPORT_DIR/<version>)")


class ExportedModel:
    """A loaded export with its baked-in settings, per mode."""

    def __init__(self, saved_model_dir: str):
        _check_version_folder(saved_model_dir)
        self.settings = read_settings(saved_model_dir)
        try:
            self.loaded = tf.saved_model.load(saved_model_dir)
        except (OSError, ValueError, tf.errors.OpError) as e:
            raise ExportError(f"{saved_model_dir}: the SavedModel cannot be loaded "
                              f"({type(e).__name__}: {str(e)[:300]}); export it again") from None
        self.image_size = int(self.settings["model"]["image_size"])
        # Exports from before the modes existed serve the search only.
        self.default_mode = self.settings.get("mode", Mode.SEARCH.value)
        per_mode = self.settings.get("modes") or {
            "search": {"search": self.settings["search"], "threshold": self.settings["threshold"]}}
        self.modes = tuple(per_mode)
        self._per_mode = per_mode
        self.thresholds = {m: None if v["threshold"] is None else float(v["threshold"])
                           for m, v in per_mode.items()}
        self.threshold = self.thresholds[self.default_mode]
        # What each threshold rests on; None in exports from before the evidence.
        self.threshold_evidence = {m: v.get("threshold_evidence") for m, v in per_mode.items()}
        # Exports from before the map scores decide by the study score.
        self.image_scores = {m: v.get("image_score", ImageScore.STUDY.value)
                             for m, v in per_mode.items()}

    def map_statistics(self, mode: str) -> Optional[MapStatistics]:
        """The good-part map statistics baked in for `mode`, or None."""
        values = self._per_mode[mode].get("map")
        return None if values is None else MapStatistics.from_dict(values)

    def search_config(self, mode: str) -> SearchConfig:
        """The search settings baked in for `mode`."""
        return config_lib.from_dict(SearchConfig, self._per_mode[mode]["search"])

    def signature(self, mode: str, kind: str):
        """The loaded signature serving `mode` for an input kind (images, encoded, float)."""
        if mode not in self.modes:
            raise ExportError(f"mode {mode!r}: this export serves {', '.join(self.modes)}")
        # Exports from before the modes existed have the default signatures only.
        name = mode_signature(mode, kind) if "modes" in self.settings else default_signature(kind)
        return self.loaded.signatures[name]

    def scorer(self, mode: Optional[str] = None) -> "ExportedScorer":
        """The `scoring.Scorer` of `mode` (default: the export's default mode)."""
        mode = mode or self.default_mode
        if mode not in self.modes:
            raise ExportError(f"mode {mode!r}: this export serves {', '.join(self.modes)}")
        return ExportedScorer(self, mode)


class ExportedScorer:
    """Scores through one mode's signatures of an export.

    Images that came from files are sent as their encoded bytes
    (`M_encoded`, exactly what a REST client sends); images without a file
    (synthetic, IDX) or in a format the graph cannot decode (TIFF) are sent
    as the pixels the library decoded (`M_float`), which are what a trained
    image got.
    """

    def __init__(self, exported: ExportedModel, mode: str):
        self.exported, self.mode = exported, mode
        self.search_config = exported.search_config(mode)
        self.statistics = exported.map_statistics(mode)
        self.image_score = exported.image_scores[mode]
        self._encoded = exported.signature(mode, "encoded")
        self._decoded = exported.signature(mode, "float")

    def score(self, images: ImageSet, batch_size: int,
              progress: Optional[Progress] = None) -> ScoreOutputs:
        """Scores an ImageSet; the map outputs are served when the mode has statistics."""
        from_files = all(os.path.isfile(i) for i in images.ids)

        def score_batch(begin, end, on_steps):
            payload = ([open(p, "rb").read() for p in images.ids[begin:end]]
                       if from_files else None)
            if payload and all(graph_decodable(b) for b in payload):
                result = self._encoded(image_bytes=tf.constant(payload))
            else:
                result = self._decoded(images=tf.constant(images.images[begin:end]))
            return self._outputs({k: v.numpy() for k, v in result.items()})

        return score_in_batches(len(images), batch_size, self.search_config.steps,
                                score_batch, progress)

    def _outputs(self, served: dict) -> ScoreOutputs:
        """Served names -> ScoreOutputs (outputs.py defines both)."""
        values = {f.name: served.get(f.metadata["served"])
                  for f in dataclasses.fields(ScoreOutputs) if f.metadata["served"]}
        values["reconstruction"] = preprocessing.uint8_to_model(served["reconstruction"])
        if values["map_scores"] is not None:
            values["map_scores"] = {config_lib.map_score_name(self.image_score):
                                    values["map_scores"]}
        return ScoreOutputs(**values)
