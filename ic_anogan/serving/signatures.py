"""The contract of an exported SavedModel: signature names, settings asset, accepted files.

Read by the export (export.py) and by its clients (client.py), so that a
client never needs the trainer or the exporter. What each signature takes and
returns is described in export.py's docstring; the output names come from
outputs.py.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

from ic_anogan import config as config_lib
from ic_anogan.core.errors import IcAnoganError

SETTINGS_ASSET = "ic_anogan.json"
WARMUP_FILE = "tf_serving_warmup_requests"
# The default mode's signatures; serving_default is TF Serving's default.
DEFAULT_SIGNATURES = ("serving_default", "score_encoded", "score_float")
# Per exported mode M: M_images (uint8, as serving_default), M_encoded (file
# bytes, as score_encoded) and M_float (as score_float).
INPUT_KINDS = ("images", "encoded", "float")
METADATA_SIGNATURE = "metadata"
# What the in-graph decoder (tf.io.decode_image) reads, by magic number; the
# library also reads TIFF, which clients must decode and send as pixels.
GRAPH_DECODABLE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF87a", b"GIF89a")


class ExportError(IcAnoganError, ValueError):
    """An export cannot be written or read (bad path, settings, mode)."""


def default_signature(kind: str) -> str:
    """The default mode's signature for an input kind (images, encoded, float)."""
    return DEFAULT_SIGNATURES[INPUT_KINDS.index(kind)]


def mode_signature(mode: str, kind: str) -> str:
    """The signature serving `mode` for an input kind (images, encoded, float)."""
    return f"{mode}_{kind}"


def signature_names(modes: Sequence[str]) -> list:
    """Every signature an export of `modes` (the first being the default) has."""
    names = list(DEFAULT_SIGNATURES)
    for mode in modes:
        names += [mode_signature(mode, kind) for kind in INPUT_KINDS]
    return names + [METADATA_SIGNATURE]


def graph_decodable(data: bytes) -> bool:
    """Whether `score_encoded` can decode these file bytes (PNG, JPEG, BMP, GIF).

    Other formats the library reads (TIFF) are sent as decoded pixels.
    """
    return data.startswith(GRAPH_DECODABLE_MAGIC)


def read_settings(saved_model_dir: str) -> dict:
    """The settings JSON an export carries in assets/."""
    path = os.path.join(saved_model_dir, "assets", SETTINGS_ASSET)
    if not os.path.exists(path):
        raise ExportError(f"{saved_model_dir}: no assets/{SETTINGS_ASSET}; "
                          "not a SavedModel exported by ic_anogan")
    return config_lib.read_json(path)


# What an export's map records hold per pixel: the SavedModel carries them; a summary
# names the settings they were computed with, not the arrays.
PER_PIXEL_MAP_FIELDS = ("mean", "std", "references", "area_normalisation")


def settings_summary(settings: dict) -> dict:
    """A copy of an export's settings for a report: every setting and threshold, but of
    the map statistics only their settings, count and pixel threshold."""
    settings = json.loads(json.dumps(settings))
    for record in [settings, *settings.get("modes", {}).values()]:
        if isinstance(record.get("map"), dict):
            for field in PER_PIXEL_MAP_FIELDS:
                record["map"].pop(field, None)
    return settings


def without_references(settings: dict) -> dict:
    """A copy of an export's settings without the neighbour statistics' reference maps
    (megabytes of base64 that the SavedModel holds as variables anyway)."""
    settings = json.loads(json.dumps(settings))
    for record in [settings, *settings.get("modes", {}).values()]:
        if isinstance(record.get("map"), dict):
            record["map"].pop("references", None)
    return settings
