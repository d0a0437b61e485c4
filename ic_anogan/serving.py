"""Scoring through an exported SavedModel, as a TF Serving client would.

`score_main.py --saved_model` uses this instead of the Python search, so the
same report can be produced from the artefact that is deployed. Images that
came from files are sent as their encoded bytes (`score_encoded`, exactly
what a REST client sends); images without a file (synthetic, IDX) are sent as
model inputs (`score_float`).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from ic_anogan import config as config_lib, data as data_lib
from ic_anogan.anomaly_maps import MapStatistics
from ic_anogan.export import GRAPH_DECODABLE_MAGIC, ExportError, read_settings


def graph_decodable(data: bytes) -> bool:
    """Whether `score_encoded` can decode these file bytes (PNG, JPEG, BMP, GIF).

    Other formats the library reads (TIFF) are sent as decoded pixels.
    """
    return data.startswith(GRAPH_DECODABLE_MAGIC)


def _check_version_folder(path: str) -> None:
    """Refuses anything but a version folder holding saved_model.pb, saying what to give."""
    if not os.path.isdir(path):
        raise ExportError(f"{path}: SavedModel folder not found (expected EXPORT_DIR/<version>)")
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return
    versions = sorted((int(d) for d in os.listdir(path)
                       if d.isdigit() and os.path.exists(os.path.join(path, d, "saved_model.pb"))))
    if versions:
        raise ExportError(f"{path}: an export base, not a version folder; give "
                          f"--saved_model={os.path.join(path, str(versions[-1]))} (the newest "
                          f"of versions {', '.join(map(str, versions))})")
    raise ExportError(f"{path}: no saved_model.pb; expected a version folder written by "
                      "score_main.py --export_dir (EXPORT_DIR/<version>)")


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
        self.default_mode = self.settings.get("mode", "search")
        per_mode = self.settings.get("modes") or {
            "search": {"search": self.settings["search"], "threshold": self.settings["threshold"]}}
        self.modes = tuple(per_mode)
        self._per_mode = per_mode
        self.thresholds = {m: None if v["threshold"] is None else float(v["threshold"])
                           for m, v in per_mode.items()}
        self.threshold = self.thresholds[self.default_mode]
        # Exports from before the map scores decide by the study score.
        self.image_scores = {m: v.get("image_score", "study") for m, v in per_mode.items()}

    def map_statistics(self, mode: str) -> Optional[MapStatistics]:
        """The good-part map statistics baked in for `mode`, or None."""
        values = self._per_mode[mode].get("map")
        return None if values is None else MapStatistics.from_dict(values)

    def settings_of(self, mode: str) -> dict:
        """The search settings baked in for `mode`."""
        return self._per_mode[mode]["search"]

    def _signature(self, mode: str, kind: str):
        if mode not in self.modes:
            raise ExportError(f"mode {mode!r}: this export serves {', '.join(self.modes)}")
        names = {"encoded": "score_encoded", "float": "score_float"}
        name = f"{mode}_{kind}" if "modes" in self.settings else names[kind]
        return self.loaded.signatures[name]

    def score(self, images: data_lib.ImageSet, batch_size: int,
              progress: Optional[Callable[[int], None]] = None,
              mode: Optional[str] = None) -> dict:
        """Scores an ImageSet with `mode` (default: the export's).

        Returns `run_search`'s outputs plus, for an export with map
        statistics, its map outputs, the map score also under its own name
        (map_max or map_topk) as `scoring.add_map_outputs` names it.
        """
        mode = mode or self.default_mode
        steps = int(self.settings_of(mode)["steps"])
        from_files = all(os.path.isfile(i) for i in images.ids)
        encoded = self._signature(mode, "encoded")
        decoded = self._signature(mode, "float")
        parts = []
        for begin in range(0, len(images), batch_size):
            end = min(begin + batch_size, len(images))
            payload = ([open(p, "rb").read() for p in images.ids[begin:end]]
                       if from_files else None)
            if payload and all(graph_decodable(b) for b in payload):
                # What a REST client sends: the files themselves.
                result = encoded(image_bytes=tf.constant(payload))
            else:
                # Not files, or a format the graph cannot decode (TIFF): the
                # pixels the library decoded, which are what a trained image got.
                result = decoded(images=tf.constant(images.images[begin:end]))
            part = {k: v.numpy() for k, v in result.items()}
            part["reconstruction"] = part["reconstruction"].astype(np.float32) / 127.5 - 1.0
            if "map_score" in part:
                # Named as the in-process outputs are, so one report reads both.
                part[config_lib.map_score_name(self.image_scores[mode])] = part["map_score"]
            parts.append(part)
            if progress:
                progress(end * steps)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
