"""`ImageSet`: decoded images with their ids, labels and masks, as every source yields them."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from ic_anogan.core.errors import IcAnoganError

GOOD = "good"
UNKNOWN_LABEL = -1


class DataError(IcAnoganError, ValueError):
    """Bad input data; the message names the path and what was expected."""


@dataclasses.dataclass
class ImageSet:
    """Decoded images with their ids, labels and masks.

    Attributes:
      images: float32 [N, S, S, 1] in [-1, 1].
      ids: where each image came from (a path, or e.g. "synthetic:test:17").
      labels: int [N]: 0 good, 1 anomalous, -1 unknown.
      defect_types: per image, "good", the defect type, or "" when unknown.
      masks: float32 [N, S, S, 1] in {0, 1} or None; rows without a mask are 0.
      has_mask: bool [N], which rows of `masks` are real.
      skipped: (path, reason) for each unreadable file skipped on request.
    """

    images: np.ndarray
    ids: list
    labels: np.ndarray
    defect_types: list
    masks: Optional[np.ndarray] = None
    has_mask: Optional[np.ndarray] = None
    skipped: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        n = len(self.images)
        if not (len(self.ids) == len(self.labels) == len(self.defect_types) == n):
            raise ValueError("ImageSet fields must all have one entry per image")
        if self.has_mask is None:
            self.has_mask = np.zeros(n, bool)

    @staticmethod
    def unlabelled(images: np.ndarray, prefix: str = "array") -> "ImageSet":
        """Model inputs [N, S, S, 1] in [-1, 1] without files or labels."""
        n = len(images)
        return ImageSet(np.asarray(images, np.float32), [f"{prefix}:{i}" for i in range(n)],
                        np.full(n, UNKNOWN_LABEL, np.int64), [""] * n)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def has_labels(self) -> bool:
        return len(self) > 0 and bool(np.all(self.labels >= 0))

    def subset(self, indices: Sequence[int]) -> "ImageSet":
        idx = np.asarray(indices, dtype=np.int64)
        return ImageSet(
            images=self.images[idx], ids=[self.ids[i] for i in idx],
            labels=self.labels[idx], defect_types=[self.defect_types[i] for i in idx],
            masks=None if self.masks is None else self.masks[idx],
            has_mask=self.has_mask[idx], skipped=list(self.skipped))

    @staticmethod
    def concatenate(sets: Sequence["ImageSet"]) -> "ImageSet":
        any_masks = any(s.masks is not None for s in sets)
        masks = None
        if any_masks:
            masks = np.concatenate([s.masks if s.masks is not None
                                    else np.zeros_like(s.images) for s in sets])
        return ImageSet(
            images=np.concatenate([s.images for s in sets]),
            ids=[i for s in sets for i in s.ids],
            labels=np.concatenate([s.labels for s in sets]),
            defect_types=[t for s in sets for t in s.defect_types],
            masks=masks, has_mask=np.concatenate([s.has_mask for s in sets]),
            skipped=[k for s in sets for k in s.skipped])


def describe(images: ImageSet) -> str:
    """One line for logs: counts per defect type and skipped files."""
    counts: dict = {}
    for t in images.defect_types:
        counts[t or "unlabelled"] = counts.get(t or "unlabelled", 0) + 1
    text = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    if images.skipped:
        text += f"; skipped {len(images.skipped)} unreadable files"
    return f"{len(images)} images of {images.image_size}x{images.image_size} ({text})"

