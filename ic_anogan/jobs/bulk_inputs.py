"""What a bulk run scores, with what and where to: checked before the pipeline starts.

The listed input paths, the output prefix and the export, for bulk_score.py's `check`."""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Optional, Sequence

from apache_beam.io.filesystems import FileSystems

from ic_anogan.config import ImageScore
from ic_anogan.jobs.bulk_transforms import Export, common_root
from ic_anogan.jobs.score_request import RequestError
from ic_anogan.serving.signatures import (default_signature, mode_signature, read_settings,
                                          without_references)


def resolve_export(saved_model: str, mode: Optional[str]) -> Export:
    """The version to score with (an export base gives its newest), refused by name when it
    is not an export or does not serve `mode`.

    Raises:
      RequestError: naming bulk.saved_model or bulk.mode.
    """
    path = saved_model.rstrip("/")
    if FileSystems.exists(path) and not FileSystems.exists(f"{path}/saved_model.pb"):
        versions = sorted(int(os.path.basename(m.path.rstrip("/").rsplit("/saved_model.pb")[0]))
                          for m in FileSystems.match([f"{path}/*/saved_model.pb"])[0].metadata_list
                          if os.path.basename(os.path.dirname(m.path)).isdigit())
        if versions:
            path = f"{path}/{versions[-1]}"
    if not FileSystems.exists(f"{path}/saved_model.pb"):
        raise RequestError("bulk.saved_model", "not an export (no saved_model.pb in it or in "
                           "a numbered version folder under it); give EXPORT_DIR or "
                           "EXPORT_DIR/<version> as the export wrote them", saved_model)
    try:
        settings = read_settings(path)
    except Exception as e:  # noqa: BLE001 - any unreadable asset means "not our export"
        raise RequestError("bulk.saved_model", f"not an ic-anogan export ({e})",
                           saved_model) from None
    modes = settings.get("modes") or {settings.get("mode", "search"): settings}
    chosen = mode or settings.get("mode", "search")
    if chosen not in modes:
        raise RequestError("bulk.mode", f"this export serves {', '.join(modes)}", chosen)
    record = modes[chosen]
    # Exports from before the modes existed have the default signatures only.
    signature = (mode_signature(chosen, "encoded") if "modes" in settings
                 else default_signature("encoded"))
    # Without the reference maps: the Export travels with every transform that uses it,
    # and the maps (megabytes of base64) live in the SavedModel anyway.
    damage = export_damage(path)
    if damage:
        raise RequestError("bulk.saved_model", f"a damaged export at {path}: {damage}; export "
                           "the model again", saved_model)
    return Export(path, chosen, signature, without_references(settings),
                  record.get("image_score", ImageScore.STUDY.value), "map" in record)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The paths a run scores: each once, in the order the globs listed them."""

    paths: tuple
    # Paths listed by more than one glob, counted once in `paths`.
    duplicates: int
    # The folder every path lies under: masks mirror the paths below it.
    root: str


def list_inputs(patterns: Sequence[str]) -> Inputs:
    """Every path the globs list, once each.

    A local glob lists what Python's glob lists (a folder, a dangling symbolic
    link or a loop included, so that each is refused by name rather than lost);
    the folders a trailing `**` walks through are the walk, not inputs. Other
    file systems list what Beam's match lists.

    Raises:
      RequestError: a glob lists nothing.
    """
    seen, paths, duplicates = set(), [], 0
    for pattern in patterns:
        if "://" in pattern:
            try:
                found = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
            except Exception:  # noqa: BLE001 - Beam raises BeamIOError for a missing path
                found = []
        else:
            if not glob.has_magic(pattern) and os.path.isdir(pattern):
                raise RequestError("bulk.input_patterns", "a folder; give a glob of its "
                                   f"files, such as {os.path.join(pattern, '*.png')}", pattern)
            walk = os.path.basename(pattern.rstrip("/")) == "**"
            found = sorted(p for p in glob.glob(pattern, recursive=True)
                           if not (walk and os.path.isdir(p) and not os.path.islink(p)))
        if not found:
            raise RequestError("bulk.input_patterns", "no file matches", pattern)
        for path in found:
            key = path if "://" in path else os.path.abspath(path)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            paths.append(path)
    return Inputs(tuple(paths), duplicates, common_root(
        [p if "://" in p else os.path.abspath(p) for p in paths]))


def output_prefix(output: str) -> str:
    """The output as a path prefix: an existing local folder without its slash gets it."""
    if "://" not in output and os.path.isdir(output) and not output.endswith(os.sep):
        return output + os.sep
    return output


def export_damage(path: str) -> Optional[str]:
    """What is wrong with the SavedModel at `path` (None: it parses and has its
    variables), found without loading TensorFlow's graph: a truncated or garbled
    saved_model.pb, or a missing variables/ folder."""
    from tensorflow.core.protobuf import saved_model_pb2
    try:
        with FileSystems.open(f"{path}/saved_model.pb") as f:
            data = f.read()
        saved_model_pb2.SavedModel().ParseFromString(data)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and others
        return f"saved_model.pb does not parse ({type(e).__name__}: {e})"
    for name in ("variables/variables.index",):
        if not FileSystems.exists(f"{path}/{name}"):
            return f"{name} is missing"
    if not FileSystems.match([f"{path}/variables/variables.data-*"])[0].metadata_list:
        return "variables/variables.data-* is missing"
    return None
