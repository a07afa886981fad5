"""Procedural segmentation scenes where edge-aware prediction pays off.

:func:`make_seg_scene` paints textured objects of ``num_classes - 1`` classes over a textured
background (class 0), with exact labels. Each class has a fixed look, independent of the
seed, so the task is learnable: a hue (spread over the color wheel by the golden ratio) and
a texture kind (stripes, value noise, checker, fractal noise, gradient, flat), jittered per
object. The scenes hold the cases that separate edge-aware models from coarse ones:

- thin structures: poles and wires 1-3 px wide, and thin rings;
- fine boundaries: star-shaped polygons with many jagged vertices;
- weak color contrast: "camouflaged" objects take the mean color of what they cover and
  keep only their class's texture pattern at low contrast;
- edges that are not class boundaries: strongly contrasting stripes/checkers inside
  objects, a background made of two textures split by a wavy horizon, and color-only
  decals on top of either.

Textures are those of the RGB-D scenes (:mod:`densepac.depth.synthetic`, painted with
:mod:`densepac.data.procedural`), evaluated at pixel coordinates divided by a per-scene
scale. Natural photographs are never used, so a seed gives the same scene on every machine.
A 128 x 128 scene takes a few milliseconds."""

from __future__ import annotations

import colorsys
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from densepac.check import check_int
from densepac.data.procedural import contrasting_color, paint, random_texture, scene_seed
from densepac.errors import InputError
from densepac.segmentation.datasets import IGNORE_INDEX, ImageMaskTransform, seg_item

#: Texture kind of class ``c`` is ``CLASS_KINDS[(c - 1) % len(CLASS_KINDS)]``.
CLASS_KINDS: tuple[str, ...] = ("stripes", "noise", "checker", "fractal", "gradient", "flat")
_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class SegSceneOptions:
    """Knobs of :func:`make_seg_scene` (pass them as keyword arguments).

    Attributes:
        min_objects, max_objects: number of filled objects (polygons, ellipses, boxes, rings).
        min_thin, max_thin: number of thin structures (poles, wires) 1-3 px wide.
        p_camouflage: per object, probability of weak color contrast with what it covers.
        p_decal: probability of each of up to three color-only decals (no label change).
        p_horizon: probability that the background is two textures split by a wavy line.
        rgb_noise: standard deviation of additive Gaussian noise on RGB.
        blur_sigma: Gaussian blur (pixels) of RGB only, like optics; labels stay sharp.
        void_border: width (px) of an ignore (255) band along class boundaries, like the
            borders of PASCAL VOC labels; 0 = none.
    """

    min_objects: int = 3
    max_objects: int = 7
    min_thin: int = 1
    max_thin: int = 3
    p_camouflage: float = 0.25
    p_decal: float = 0.5
    p_horizon: float = 0.5
    rgb_noise: float = 0.01
    blur_sigma: float = 0.5
    void_border: int = 0

    def validate(self) -> None:
        """Raise InputError for out-of-range values."""
        for lo, hi in (("min_objects", "max_objects"), ("min_thin", "max_thin")):
            a, b = getattr(self, lo), getattr(self, hi)
            if not 0 <= a <= b:
                raise InputError(f"make_seg_scene: need 0 <= {lo} <= {hi}, got {a}, {b}; fix the two options")
        for name in ("p_camouflage", "p_decal", "p_horizon"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"make_seg_scene: {name}={value} is not a probability; use a value in [0, 1]")
        if self.rgb_noise < 0 or self.blur_sigma < 0 or self.void_border < 0:
            raise InputError("make_seg_scene: rgb_noise, blur_sigma and void_border must be >= 0")


def class_color(cls: int) -> np.ndarray:
    """The base RGB color (3,) float32 of class ``cls`` >= 1 (seed independent)."""
    hue = (0.07 + (cls - 1) * _GOLDEN) % 1.0
    # Alternate value so neighbouring hues also differ in brightness.
    value = 0.85 if cls % 2 else 0.62
    return np.array(colorsys.hsv_to_rgb(hue, 0.75, value), dtype=np.float32)


def _class_texture(rng: np.random.Generator, cls: int) -> dict:
    """Texture of one object of class ``cls``: the class's kind and hue, jittered."""
    kind = CLASS_KINDS[(cls - 1) % len(CLASS_KINDS)]
    c1 = np.clip(class_color(cls) + rng.normal(0.0, 0.04, 3), 0.03, 0.97).astype(np.float32)
    # Second color: a darker or lighter shade of the same hue, so the stripes inside an
    # object are strong edges that are not class boundaries.
    c2 = np.clip(c1 * rng.uniform(0.35, 0.6) if rng.random() < 0.7 else c1 + (1 - c1) * 0.6, 0.0, 1.0)
    tex: dict[str, Any] = {
        "kind": kind,
        "c1": c1,
        "c2": c2.astype(np.float32),
        "angle": rng.uniform(0, math.pi),
        "offset": rng.uniform(-10, 10, size=2),
    }
    if kind == "noise":
        tex.update(grid=rng.random((16, 16)).astype(np.float32), period=rng.uniform(0.08, 0.25), octaves=3)
    elif kind == "fractal":
        tex.update(grid=rng.random((24, 24, 2)).astype(np.float32), period=rng.uniform(0.15, 0.4), octaves=4)
    elif kind in ("stripes", "checker"):
        tex.update(period=rng.uniform(0.05, 0.15))
    elif kind == "gradient":
        tex.update(length=rng.uniform(0.5, 2.0))
    return tex


def _muted(tex: dict, amount: float) -> dict:
    """``tex`` with both colors pulled towards grey by ``amount`` (background look)."""
    out = dict(tex)
    for key in ("c1", "c2"):
        c = tex[key]
        out[key] = (c.mean() + (c - c.mean()) * (1 - amount)).astype(np.float32)
    return out


class _Painter:
    """Canvas of one scene: RGB, labels and the texture coordinates of every pixel."""

    def __init__(self, h: int, w: int, scale: float) -> None:
        self.rgb = np.zeros((h, w, 3), dtype=np.float32)
        self.label = np.zeros((h, w), dtype=np.int64)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.s, self.t = xx / scale, yy / scale
        self.h, self.w = h, w

    def paint(self, mask: np.ndarray, tex: dict, cls: int | None, shade: np.ndarray | None = None) -> None:
        """Texture the pixels of ``mask``; set their label to ``cls`` unless it is None (decal)."""
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        if rows.size == 0:
            return
        # Textures are evaluated on the mask's bounding box only (2-D, as paint expects).
        win = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        m = mask[win]
        color = paint(tex, self.s[win], self.t[win])[m]
        if shade is not None:
            color = color * shade[win][m][:, None]
        self.rgb[win][m] = color
        if cls is not None:
            self.label[win][m] = cls

    def ramp(self, rng: np.random.Generator, strength: float) -> np.ndarray:
        """A linear shading ramp (H, W) in ``1 +- strength``, in a random direction."""
        a = rng.uniform(0, 2 * math.pi)
        d = math.cos(a) * (self.s - self.s.mean()) + math.sin(a) * (self.t - self.t.mean())
        return (1.0 + strength * d / max(float(np.abs(d).max()), 1e-6)).astype(np.float32)


def _mask(h: int, w: int, draw: Callable[[np.ndarray], None], width: int = 0) -> np.ndarray:
    """Boolean mask of what ``draw`` paints; ``width`` > 0 widens 1-px curves to exactly that many px."""
    canvas = np.zeros((h, w), dtype=np.uint8)
    draw(canvas)
    if width > 1:
        # OpenCV's own thick lines are 2 * (thickness // 2) + 1 px wide, never 2; dilating a
        # 1-px curve with a width x width square gives 2 and 3 px as well.
        canvas = cv2.dilate(canvas, np.ones((width, width), dtype=np.uint8))
    return canvas.astype(bool)


def _star(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A star-shaped polygon with 5-16 jagged vertices: fine, irregular boundaries."""
    centre = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h])
    radius = rng.uniform(0.12, 0.3) * min(h, w)
    count = int(rng.integers(5, 17))
    angles = np.sort(rng.uniform(0, 2 * math.pi, size=count))
    radii = radius * rng.uniform(0.35, 1.0, size=count)
    pts = centre + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    return _mask(h, w, lambda c: cv2.fillPoly(c, [np.round(pts).astype(np.int32)], 1))


def _ellipse(rng: np.random.Generator, h: int, w: int, ring: bool = False) -> np.ndarray:
    centre = (int(rng.uniform(0.15, 0.85) * w), int(rng.uniform(0.15, 0.85) * h))
    axes = (int(rng.uniform(0.08, 0.25) * min(h, w)) + 2, int(rng.uniform(0.08, 0.25) * min(h, w)) + 2)
    angle = float(rng.uniform(0, 180))
    # A ring is the outline only, 1-3 px: a closed thin structure.
    width = int(rng.integers(1, 4)) if ring else 0
    return _mask(h, w, lambda c: cv2.ellipse(c, centre, axes, angle, 0, 360, 1, 1 if ring else -1), width)


def _box(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    centre = (float(rng.uniform(0.15, 0.85) * w), float(rng.uniform(0.15, 0.85) * h))
    size = (float(rng.uniform(0.12, 0.45) * w), float(rng.uniform(0.12, 0.45) * h))
    corners = cv2.boxPoints((centre, size, float(rng.uniform(0, 90))))
    return _mask(h, w, lambda c: cv2.fillPoly(c, [np.round(corners).astype(np.int32)], 1))


def _thin(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A pole (nearly vertical straight line) or a sagging wire, 1-3 px wide."""
    width = int(rng.integers(1, 4))
    if rng.random() < 0.5:
        x0 = rng.uniform(0.05, 0.95) * w
        lean = rng.uniform(-0.15, 0.15) * h
        y0, y1 = rng.uniform(0.0, 0.4) * h, rng.uniform(0.7, 1.0) * h
        pts = np.array([[x0, y0], [x0 + lean, y1]])
    else:
        xs = np.linspace(rng.uniform(-0.1, 0.3) * w, rng.uniform(0.7, 1.1) * w, 24)
        y0, sag = rng.uniform(0.1, 0.7) * h, rng.uniform(-0.15, 0.25) * h
        u = np.linspace(-1.0, 1.0, 24)
        pts = np.stack([xs, y0 + sag * (1 - u * u) + rng.uniform(-0.1, 0.1) * h * u], axis=1)
    return _mask(h, w, lambda c: cv2.polylines(c, [np.round(pts).astype(np.int32)], False, 1, 1), width)


def _horizon(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Pixels below a wavy line across the image."""
    x = np.arange(w, dtype=np.float32)
    line = h * (
        rng.uniform(0.3, 0.7)
        + rng.uniform(0.02, 0.08) * np.sin(x / w * rng.uniform(3, 12) + rng.uniform(0, 2 * math.pi))
    )
    return np.arange(h, dtype=np.float32)[:, None] > line[None, :]


def _void_band(label: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` px of a class boundary."""
    k = np.ones((2 * width + 1, 2 * width + 1), dtype=np.uint8)
    lab = label.astype(np.uint8)
    return cv2.dilate(lab, k) != cv2.erode(lab, k)


def make_seg_scene(
    seed: int, height: int = 128, width: int = 128, num_classes: int = 5, **options: Any
) -> dict[str, np.ndarray]:
    """Render one procedural segmentation scene, deterministic from ``seed``.

    Args:
        seed: any non-negative int.
        height, width: image size in pixels (each >= 16).
        num_classes: classes including the background 0 (2..255).
        **options: fields of :class:`SegSceneOptions`.

    Returns:
        dict with ``image`` float32 ``(H, W, 3)`` RGB in [0, 1] and ``label`` int64 ``(H, W)``
        in ``[0, num_classes)`` (plus 255 along boundaries when ``void_border > 0``).
    """
    fields = {f.name for f in dataclasses.fields(SegSceneOptions)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise InputError(
            f"make_seg_scene: unknown option(s) {', '.join(unknown)}; valid options are {', '.join(sorted(fields))}"
        )
    opts = SegSceneOptions(**options)
    opts.validate()
    check_int(seed, "make_seg_scene: seed", minimum=0)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or not 2 <= num_classes <= 255:
        raise InputError(
            f"make_seg_scene: num_classes={num_classes!r}; use an int in [2, 255] "
            "(background 0 plus at least one object class)"
        )
    h, w = int(height), int(width)
    if h < 16 or w < 16:
        raise InputError(f"make_seg_scene: size {height}x{width} is too small; use at least 16x16 pixels")
    rng = np.random.default_rng(int(seed))
    # Texture coordinates scale with the image, so stripes keep their look at any size.
    painter = _Painter(h, w, scale=min(h, w) * rng.uniform(0.7, 1.3))

    def child() -> np.random.Generator:
        # One child stream per texture: texture draws never shift the geometry stream.
        return np.random.default_rng(int(rng.integers(0, 2**63 - 1)))

    # Background, class 0: muted textures, sometimes two split by a wavy horizon.
    everywhere = np.ones((h, w), dtype=bool)
    painter.paint(everywhere, _muted(random_texture(child(), (), 0.0), 0.6), 0, painter.ramp(rng, 0.1))
    if rng.random() < opts.p_horizon:
        painter.paint(_horizon(rng, h, w), _muted(random_texture(child(), (), 0.0), 0.6), 0)

    object_classes = num_classes - 1
    # Classes cycle through a shuffled order, so every class shows up as often as any other.
    order = list(rng.permutation(object_classes) + 1)
    num_objects = int(rng.integers(opts.min_objects, opts.max_objects + 1))
    num_thin = int(rng.integers(opts.min_thin, opts.max_thin + 1))
    shapes = (_star, _ellipse, _box, lambda r, hh, ww: _ellipse(r, hh, ww, ring=True))
    for i in range(num_objects):
        cls = int(order[i % object_classes])
        mask = shapes[int(rng.choice(4, p=[0.4, 0.25, 0.25, 0.1]))](rng, h, w)
        tex = _class_texture(child(), cls)
        if rng.random() < opts.p_camouflage and mask.any():
            # Weak contrast: the mean color of what the object covers, its pattern at +-8 %.
            under = painter.rgb[mask].mean(axis=0)
            tex["c1"] = np.clip(under * rng.uniform(0.95, 1.05), 0.0, 1.0).astype(np.float32)
            tex["c2"] = np.clip(tex["c1"] * 0.85, 0.0, 1.0).astype(np.float32)
        painter.paint(mask, tex, cls, painter.ramp(rng, 0.15))
    for _ in range(3):
        tex = random_texture(child(), (), 0.0)
        if rng.random() < opts.p_decal:
            # Color only: an edge that is not a class boundary, over background or objects.
            tex["c1"] = contrasting_color(rng, painter.rgb.reshape(-1, 3).mean(axis=0))
            region = _star(rng, h, w)
            if rng.random() < 0.5:
                region &= painter.label == 0  # on the background only
            painter.paint(region, tex, None)
    for i in range(num_thin):
        cls = int(order[(num_objects + i) % object_classes])
        tex = _class_texture(child(), cls)
        painter.paint(_thin(rng, h, w), tex, cls)

    rgb = painter.rgb
    if opts.blur_sigma > 0:
        rgb = cv2.GaussianBlur(rgb, (0, 0), opts.blur_sigma)
    if opts.rgb_noise > 0:
        rgb = rgb + rng.normal(0.0, opts.rgb_noise, size=rgb.shape).astype(np.float32)
    label = painter.label
    if opts.void_border > 0:
        label = np.where(_void_band(label, int(opts.void_border)), IGNORE_INDEX, label)
    return {"image": np.clip(rgb, 0.0, 1.0).astype(np.float32), "label": label.astype(np.int64)}


class SyntheticSegmentation(Dataset):
    """Scenes of :func:`make_seg_scene`, made on the fly; item ``i`` is deterministic from ``(seed, i)``.

    Items are ``{"image": (3, H, W) float32, "label": (H, W) int64, "name": str}`` like the
    file datasets of :mod:`densepac.segmentation.datasets`.

    Args:
        num_scenes: dataset length.
        seed: base seed; scene ``i`` uses ``scene_seed(seed, i)``.
        size: ``(H, W)``.
        num_classes: classes including the background.
        transform: joint ``(image, label) -> (image, label)`` augmentation.
        scene_options: keyword options of :func:`make_seg_scene`.
    """

    def __init__(
        self,
        num_scenes: int,
        seed: int = 0,
        size: tuple[int, int] = (128, 128),
        num_classes: int = 5,
        transform: ImageMaskTransform | None = None,
        scene_options: dict[str, Any] | None = None,
    ) -> None:
        check_int(num_scenes, "num_scenes", minimum=1)
        check_int(seed, "seed", minimum=0)
        if transform is not None and not callable(transform):
            raise InputError(f"transform={transform!r} is not callable; give e.g. SegTransform(...) or None")
        try:
            h, w = (int(v) for v in size)
        except (TypeError, ValueError):
            raise InputError(f"size={size!r}; give (height, width) in pixels") from None
        self.num_scenes, self.seed, self.size = int(num_scenes), int(seed), (h, w)
        self.num_classes, self.transform = num_classes, transform
        self.scene_options = dict(scene_options or {})
        # Fail on bad arguments now rather than inside a DataLoader worker.
        make_seg_scene(0, 16, 16, num_classes, **self.scene_options)
        if h < 16 or w < 16:
            raise InputError(f"size={size!r} is too small; use at least 16x16 pixels")

    def __len__(self) -> int:
        return self.num_scenes

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for SyntheticSegmentation of length {len(self)}")
        index %= len(self)
        scene = make_seg_scene(scene_seed(self.seed, index), *self.size, self.num_classes, **self.scene_options)
        return seg_item(scene["image"], scene["label"], f"synthetic_seg_{self.seed}_{index:06d}", self.transform)

    def __repr__(self) -> str:
        return (
            f"SyntheticSegmentation({self.num_scenes} scenes, seed={self.seed}, size={self.size}, "
            f"num_classes={self.num_classes})"
        )


#: Seed, size and classes of the segmentation sample in ``datasets/samples/``
#: (``make_synthetic_seg.py --sample``); a seed no training stream draws.
SEG_DEMO_SEED = 987_654_321
SEG_DEMO_SIZE = (160, 160)
SEG_DEMO_CLASSES = 6


def make_seg_demo_sample() -> dict[str, np.ndarray]:
    """The segmentation sample: ``image`` (160, 160, 3) RGB in [0, 1], ``label`` (160, 160) int64, 6 classes."""
    return make_seg_scene(SEG_DEMO_SEED, *SEG_DEMO_SIZE, num_classes=SEG_DEMO_CLASSES)
