"""Built-in synthetic IC packages: top views of molded SOP and QFP packages.

So that a new user sees the whole product work before they have images of
their own, this module renders what a line camera sees after molding: a dark
epoxy body with mottled texture and a bevelled rim, metal leads, a pin-1
dimple, laser marking, an uneven light, small shifts and rotations, and sensor
noise. Scenes are drawn at 4x the output size and box-downsampled, so edges are
soft the way a camera's are.

Defects, each with an exact pixel mask:
  * short_fill: the resin front stopped short; an irregular bite at an edge or
    corner of the body shows the lead frame underneath.
  * void: pits or gas bubbles in the mold surface.
  * chipped_edge: a fractured, lighter flake missing from a body edge.
  * scratch: a thin bright line scraped across the body.

One package type per dataset by default (SOP), as a line trains one model per
product; "qfp" and "mixed" (60% SOP, 40% QFP) are there too.

Every image is drawn from its own random stream, seeded by (seed, split, type,
index), so image k is the same whatever the number of images asked for.
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ic_anogan.config import (STUDY_TEST_COUNTS, STUDY_TRAIN_GOOD, SYNTHETIC_PACKAGES as PACKAGES,
                              TEXTURE_TEST_COUNTS)
from ic_anogan.core import atomic_io
from ic_anogan.data.image_set import GOOD, DataError, ImageSet
from ic_anogan.data.preprocessing import uint8_to_model
from ic_anogan.data.synthetic_defects import SURFACE_DEFECT_TYPES
from ic_anogan.data.synthetic_texture import render_surface

DEFECT_TYPES = ("short_fill", "void", "chipped_edge", "scratch")
# PACKAGES: a production line inspects one package type per model; "mixed"
# draws SOP (60%) and QFP (40%) packages, a harder, two-mode distribution.
_SPLIT_CODES = {"train": 1, "test": 2, "validation": 3}
_TYPE_CODES = {GOOD: 0, **{t: i + 1 for i, t in enumerate(DEFECT_TYPES + SURFACE_DEFECT_TYPES)}}


def defect_types(package: str) -> tuple:
    """The defect types `package` renders: the IC package's, or the texture's."""
    return SURFACE_DEFECT_TYPES if package == "texture" else DEFECT_TYPES
_SUPERSAMPLE = 4
_CHARSET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a coarse grid upsampled bicubically."""
    coarse = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC)
    return np.asarray(image, np.float32)


def _polygon_mask(size: int, polygon: list) -> np.ndarray:
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).polygon(polygon, fill=255)
    return np.asarray(canvas, np.float32) / 255.0


def _irregular_blob(rng: np.random.Generator, cx: float, cy: float, radius: float,
                    roughness: float, points: int = 40) -> list:
    """A closed polygon whose radius wanders smoothly: a ragged resin front."""
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    harmonics = sum(rng.normal(0, roughness / k) * np.sin(k * angles + rng.uniform(0, 6.3))
                    for k in range(2, 7))
    jitter = rng.normal(0, roughness * 0.15, points)
    r = radius * np.clip(1.0 + harmonics + jitter, 0.35, 1.8)
    return [(float(cx + ri * np.cos(a)), float(cy + ri * np.sin(a)))
            for ri, a in zip(r, angles)]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


class _Scene:
    """One package drawn at high resolution as float layers in [0, 1]."""

    def __init__(self, rng: np.random.Generator, size: int, package: str):
        self.rng, self.size = rng, size
        r = size
        draw = rng.uniform()  # drawn for every package, so the streams stay aligned
        self.kind = package if package != "mixed" else ("qfp" if draw < 0.4 else "sop")
        jitter = lambda: rng.uniform(0.97, 1.03)  # noqa: E731 - tiny local helper
        if self.kind == "sop":
            self.body_w, self.body_h = 0.60 * r * jitter(), 0.40 * r * jitter()
        else:
            self.body_w = self.body_h = 0.54 * r * jitter()
        self.cx, self.cy = r / 2, r / 2
        self.x0, self.x1 = self.cx - self.body_w / 2, self.cx + self.body_w / 2
        self.y0, self.y1 = self.cy - self.body_h / 2, self.cy + self.body_h / 2
        self.body = _polygon_mask(r, [(self.x0, self.y0), (self.x1, self.y0),
                                      (self.x1, self.y1), (self.x0, self.y1)])
        self.base_tone = rng.uniform(0.16, 0.22)

    def leads(self) -> np.ndarray:
        """Lead layer: 1 where metal is, with a highlight along each lead's bend."""
        r, rng = self.size, self.rng
        canvas = Image.new("F", (r, r), 0.0)
        draw = ImageDraw.Draw(canvas)
        if self.kind == "sop":
            count, length = 7, 0.13 * r
            sides = [("top", self.x0, self.x1), ("bottom", self.x0, self.x1)]
        else:
            count, length = 9, 0.11 * r
            sides = [("top", self.x0, self.x1), ("bottom", self.x0, self.x1),
                     ("left", self.y0, self.y1), ("right", self.y0, self.y1)]
        for side, start, end in sides:
            pitch = (end - start) / count
            width = pitch * 0.5
            for i in range(count):
                centre = start + pitch * (i + 0.5)
                tone = rng.uniform(0.78, 0.9)
                # A lead is drawn as three bands: root, bright bend, foot.
                for k, shade in enumerate((0.8, 1.0, 0.88)):
                    a, b = length * k / 3, length * (k + 1) / 3
                    if side == "top":
                        box = (centre - width / 2, self.y0 - b, centre + width / 2, self.y0 - a)
                    elif side == "bottom":
                        box = (centre - width / 2, self.y1 + a, centre + width / 2, self.y1 + b)
                    elif side == "left":
                        box = (self.x0 - b, centre - width / 2, self.x0 - a, centre + width / 2)
                    else:
                        box = (self.x1 + a, centre - width / 2, self.x1 + b, centre + width / 2)
                    draw.rectangle(box, fill=tone * shade)
        return np.asarray(canvas, np.float32)

    def epoxy(self) -> np.ndarray:
        """Body tone: mottled epoxy, a lighter bevelled rim, pin-1 dimple, marking."""
        r, rng = self.size, self.rng
        tone = (self.base_tone + 0.025 * _smooth_noise(rng, r, 9)
                + 0.012 * _smooth_noise(rng, r, 40))
        # Bevel: the draft of the mold makes the outer rim catch more light.
        yy, xx = np.mgrid[0:r, 0:r].astype(np.float32)
        rim = np.minimum.reduce([xx - self.x0, self.x1 - xx, yy - self.y0, self.y1 - yy])
        bevel = 0.035 * r
        tone += 0.09 * np.clip(1.0 - rim / bevel, 0.0, 1.0)
        # Pin-1 dimple: a shallow round recess, darker, with a lit lower rim.
        px = self.x0 + 0.15 * self.body_w
        py = self.y0 + 0.22 * self.body_h
        radius = 0.045 * r
        dist = np.hypot(xx - px, yy - py)
        inside = np.clip((radius - dist) / 2.0, 0.0, 1.0)
        tone -= 0.07 * inside
        tone += 0.08 * inside * np.clip((yy - py) / radius, 0.0, 1.0) ** 2
        # Laser marking: two lines of text, lighter where the laser scorched.
        marking = Image.new("L", (r, r), 0)
        draw = ImageDraw.Draw(marking)
        font = _font(max(8, int(0.075 * r)))
        lines = ["".join(rng.choice(list(_CHARSET), 6)), "".join(rng.choice(list(_CHARSET), 5))]
        for k, line in enumerate(lines):
            left, top, right, bottom = draw.textbbox((0, 0), line, font=font)
            x = self.cx - (right - left) / 2 + 0.04 * self.body_w
            y = self.cy - 0.02 * r + k * 0.1 * r - (bottom - top) / 2
            draw.text((x, y), line, fill=255, font=font)
        tone += 0.16 * np.asarray(marking, np.float32) / 255.0
        return tone

    def frame(self) -> np.ndarray:
        """What lies around the package: the matte tray / strip, slightly textured."""
        r = self.size
        return 0.52 + 0.03 * _smooth_noise(self.rng, r, 6) + 0.01 * _smooth_noise(self.rng, r, 50)


def _edge_point(rng: np.random.Generator, scene: _Scene, corner: bool) -> tuple:
    """A point on the body outline: a corner, or somewhere along an edge."""
    if corner:
        return (scene.x0 if rng.uniform() < 0.5 else scene.x1,
                scene.y0 if rng.uniform() < 0.5 else scene.y1)
    side = rng.integers(4)
    t = rng.uniform(0.15, 0.85)
    if side == 0:
        return scene.x0 + t * scene.body_w, scene.y0
    if side == 1:
        return scene.x0 + t * scene.body_w, scene.y1
    if side == 2:
        return scene.x0, scene.y0 + t * scene.body_h
    return scene.x1, scene.y0 + t * scene.body_h


def _render_highres(rng: np.random.Generator, size: int, defect: str, package: str) -> tuple:
    scene = _Scene(rng, size, package)
    leads = scene.leads()
    lead_mask = (leads > 0).astype(np.float32)
    body = scene.body.copy()
    tone = scene.epoxy()
    frame = scene.frame()
    mask = np.zeros((size, size), np.float32)
    exposed = None  # what shows where resin is missing
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    short_side = min(scene.body_w, scene.body_h)

    if defect == "short_fill":
        corner = rng.uniform() < 0.5
        cx, cy = _edge_point(rng, scene, corner)
        radius = short_side * rng.uniform(0.22, 0.42)
        bite = _polygon_mask(size, _irregular_blob(rng, cx, cy, radius, 0.35)) * scene.body
        mask = bite
        # Under the missing resin: the lead frame's bright paddle and the die
        # attach, brighter and flatter than epoxy; a dark shadow under the front.
        exposed = 0.62 + 0.05 * _smooth_noise(rng, size, 20)
        body = body * (1.0 - bite)
    elif defect == "chipped_edge":
        cx, cy = _edge_point(rng, scene, corner=False)
        radius = short_side * rng.uniform(0.08, 0.15)
        chip = _polygon_mask(size, _irregular_blob(rng, cx, cy, radius, 0.5, points=12))
        chip *= scene.body
        mask = chip
        # A fracture surface: lighter, grainy epoxy.
        tone = tone * (1 - chip) + chip * (0.38 + 0.05 * rng.normal(0, 1, (size, size)))
    elif defect == "void":
        for _ in range(rng.integers(1, 4)):
            radius = short_side * rng.uniform(0.04, 0.09)
            px = rng.uniform(scene.x0 + radius * 1.5, scene.x1 - radius * 1.5)
            py = rng.uniform(scene.y0 + radius * 1.5, scene.y1 - radius * 1.5)
            dist = np.hypot(xx - px, yy - py)
            pit = np.clip((radius - dist) / 2.0, 0.0, 1.0)
            # A pit: dark hollow, with a bright crescent where the light hits its far wall.
            crescent = pit * np.clip((yy - py) / radius + 0.2, 0.0, 1.0) ** 2
            tone = tone - 0.14 * pit + 0.5 * crescent
            mask = np.maximum(mask, (dist < radius).astype(np.float32))
    elif defect == "scratch":
        line = Image.new("L", (size, size), 0)
        x_a = rng.uniform(scene.x0, scene.x1)
        x_b = np.clip(x_a + rng.uniform(-0.5, 0.5) * scene.body_w, scene.x0, scene.x1)
        ya, yb = scene.y0 + 0.1 * scene.body_h, scene.y1 - 0.1 * scene.body_h
        ImageDraw.Draw(line).line([(x_a, ya), (float(x_b), yb)], fill=255,
                                  width=max(2, size // 90))
        scratch = np.asarray(line, np.float32) / 255.0 * scene.body
        tone = tone + 0.3 * scratch
        mask = scratch
    elif defect != GOOD:
        raise DataError(f"unknown defect type {defect!r}; expected one of {DEFECT_TYPES}")

    image = frame * (1.0 - lead_mask) + leads * lead_mask
    if exposed is not None:
        # The lead frame continues under the body; where resin is missing it is bare.
        image = image * (1 - mask) + exposed * mask
    image = image * (1.0 - body) + tone * body

    # Uneven light: a soft linear gradient in a random direction.
    angle = rng.uniform(0, 2 * np.pi)
    gradient = ((xx - size / 2) * np.cos(angle) + (yy - size / 2) * np.sin(angle)) / size
    image *= 1.0 + rng.uniform(0.1, 0.25) * gradient

    # Placement: small shifts and rotations, moving image and mask together.
    rotation = rng.uniform(-2.5, 2.5)
    shift = tuple(rng.uniform(-0.03, 0.03, 2) * size)
    fill = float(np.median(frame))

    def place(array, fill_value):
        moved = Image.fromarray(array.astype(np.float32), mode="F").rotate(
            rotation, resample=Image.BILINEAR, translate=shift, fillcolor=fill_value)
        return np.asarray(moved, np.float32)

    return place(image, fill), place(mask, 0.0)


def render_package(rng: np.random.Generator, image_size: int, defect: str = GOOD,
                   package: str = "sop") -> tuple[np.ndarray, np.ndarray]:
    """Renders one package.

    Args:
      rng: the image's own random stream.
      image_size: output side in pixels.
      defect: "good" or one of `defect_types(package)`.
      package: "sop", "qfp", "mixed", or "texture" (synthetic_texture.py).

    Returns:
      (image uint8 [S, S], mask uint8 [S, S] with 255 on the defect).
    """
    if package not in PACKAGES:
        raise DataError(f"unknown package {package!r}; expected one of {PACKAGES}")
    if package == "texture":
        return render_surface(rng, image_size, defect)
    high = image_size * _SUPERSAMPLE
    image, mask = _render_highres(rng, high, defect, package)
    # Box downsampling: each output pixel averages its 4x4 sensor footprint.
    shape = (image_size, _SUPERSAMPLE, image_size, _SUPERSAMPLE)
    image = image.reshape(shape).mean(axis=(1, 3))
    mask = mask.reshape(shape).mean(axis=(1, 3))
    image = image + rng.normal(0.0, 0.012, image.shape)  # sensor noise
    image_u8 = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    mask_u8 = np.where(mask >= 0.5, 255, 0).astype(np.uint8)
    return image_u8, mask_u8


def _rng(seed: int, split: str, defect: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_CODES[split], _TYPE_CODES[defect], index])


def _counts(good: int, defects: dict, package: str) -> dict:
    counts = {GOOD: good, **defects}
    known = defect_types(package)
    for name, count in counts.items():
        if name != GOOD and name not in known:
            raise DataError(f"unknown defect type {name!r} for {package}; expected one of "
                            f"{known}")
        if count < 0:
            raise DataError(f"{name}: count must be >= 0, got {count}")
    return counts


def render_set(split: str, image_size: int, good: int = 0, seed: int = 0,
               package: str = "sop", **defects: int) -> ImageSet:
    """Renders an `ImageSet` in memory.

    Args:
      split: "train", "test" or "validation"; each has its own images.
      image_size: output side in pixels.
      good: number of good images.
      seed: dataset seed.
      package: "sop", "qfp", "mixed" or "texture".
      **defects: number of images per defect type, e.g. short_fill=755.
    """
    if split not in _SPLIT_CODES:
        raise DataError(f"split must be one of {tuple(_SPLIT_CODES)}, got {split!r}")
    plan = [(defect, i) for defect, count in _counts(good, defects, package).items()
            for i in range(count)]
    if not plan:
        raise DataError("render_set: asked for zero images")
    # numpy and PIL release the GIL for most of a render, so threads help.
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        rendered = list(pool.map(
            lambda item: render_package(_rng(seed, split, item[0], item[1]), image_size,
                                        item[0], package), plan))
    images = [image for image, _ in rendered]
    masks = [mask for _, mask in rendered]
    ids = [f"synthetic:{split}:{defect}:{i}" for defect, i in plan]
    labels = [0 if defect == GOOD else 1 for defect, _ in plan]
    types = [defect for defect, _ in plan]
    pixels = uint8_to_model(np.stack(images)[..., None])
    mask_array = (np.stack(masks)[..., None] > 0).astype(np.float32)
    has_mask = np.array([t != GOOD for t in types])
    return ImageSet(pixels, ids, np.array(labels, np.int64), types,
                    masks=mask_array, has_mask=has_mask)


def write_mvtec(root: str, image_size: int = 64, train_good: int = STUDY_TRAIN_GOOD,
                test_counts: Optional[dict] = None, seed: int = 0, package: str = "sop") -> str:
    """Writes an MVTec-AD-style folder: train/good, test/<type>, ground_truth/<type>.

    The folder is assembled under a temporary name and renamed, so an
    interrupted run leaves nothing at `root`.

    Raises:
      FileExistsError: `root` exists already.
    """
    default = TEXTURE_TEST_COUNTS if package == "texture" else STUDY_TEST_COUNTS
    test_counts = dict(default if test_counts is None else test_counts)
    good_test = test_counts.pop(GOOD, 0)
    plan = [("train", GOOD, train_good)] + [("test", GOOD, good_test)] + [
        ("test", t, n) for t, n in _counts(0, test_counts, package).items() if t != GOOD]
    with atomic_io.new_directory(root) as temp:
        for split, defect, count in plan:
            folder = os.path.join(temp, split, defect)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                image, mask = render_package(_rng(seed, split, defect, i), image_size, defect,
                                             package)
                name = f"{i:04d}.png"
                Image.fromarray(image).save(os.path.join(folder, name))
                if defect != GOOD:
                    gt = os.path.join(temp, "ground_truth", defect)
                    os.makedirs(gt, exist_ok=True)
                    Image.fromarray(mask).save(os.path.join(gt, f"{i:04d}_mask.png"))
    return root
