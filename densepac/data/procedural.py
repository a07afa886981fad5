"""Procedural textures and colors that both synthetic scene generators paint with.

Textures (value noise, stripes, checkers, gradients, flat color and natural-image patches
when such images are available) are evaluated in metric surface coordinates, so they
foreshorten with the geometry they are painted on. Natural photographs are looked up in
packages that ship sample images (scikit-image, scikit-learn, matplotlib, imageio), never
copied into this repository. :func:`scene_seed` gives every scene of a dataset its own seed.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from densepac.errors import InputError

_NATURAL_SUFFIXES = (".jpg", ".jpeg", ".png")


# Natural photographs that some scientific packages ship as sample data. Only looked up,
# never copied into this repository.
_NATURAL_IMAGE_SOURCES: tuple[tuple[str, str], ...] = (
    ("sklearn", "datasets/images"),
    ("skimage", "data"),
    ("matplotlib", "mpl-data/sample_data"),
    ("imageio", "resources/images"),
)


#: Images never used as textures: the real RGB-D scene densepac validates on
#: (scikit-image's Middlebury "Motorcycle", see densepac.depth.real) must not leak into training.
_HELD_OUT_IMAGES = ("motorcycle_left", "motorcycle_right", "motorcycle_disp")
_MIN_NATURAL_SIDE = 96


_MAX_NATURAL_SIDE = 384


def find_natural_images() -> tuple[Path, ...]:
    """Paths of sample photographs shipped inside installed packages (may be empty).

    Packages are located without importing them, so the lookup is cheap. The real scene
    densepac validates on is left out (``_HELD_OUT_IMAGES``).
    """
    found: list[Path] = []
    for package, sub in _NATURAL_IMAGE_SOURCES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            folder = Path(location) / sub
            if folder.is_dir():
                found.extend(
                    p
                    for p in sorted(folder.iterdir())
                    if p.suffix.lower() in _NATURAL_SUFFIXES and p.stem not in _HELD_OUT_IMAGES
                )
    return tuple(found)


def _load_natural(path: Path) -> np.ndarray | None:
    """float32 (h, w, 3) RGB in [0, 1], at most 384 px a side; None when unusable."""
    # PIL, not OpenCV: libpng prints warnings about some sample images' color profiles on stderr.
    try:
        with Image.open(path) as im:
            bgr = np.asarray(im.convert("RGB"))[..., ::-1]
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    if min(bgr.shape[:2]) < _MIN_NATURAL_SIDE:
        return None
    # Grey or nearly grey pictures (plots, line art) make poor color textures.
    if float(np.std(bgr.astype(np.float32), axis=2).mean()) < 4.0:
        return None
    factor = _MAX_NATURAL_SIDE / max(bgr.shape[:2])
    if factor < 1:
        bgr = cv2.resize(bgr, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    rgb = np.ascontiguousarray(bgr[..., ::-1], dtype=np.float32) / 255.0
    rgb.setflags(write=False)
    return rgb


@functools.lru_cache(maxsize=8)
def _natural_pool_cached(paths: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    # Cached because decoding photographs would dominate the ~10 ms a scene takes; the
    # arrays are read-only so sharing them between calls is safe.
    images = (_load_natural(Path(p)) for p in paths)
    return tuple(img for img in images if img is not None)


def natural_pool(spec: Any) -> tuple[np.ndarray, ...]:
    if spec is None:
        return ()
    if isinstance(spec, str):
        if spec != "auto":
            raise InputError(
                f"make_rgbd_scene: natural_images={spec!r}; use 'auto', None or a list of "
                "image paths / (H, W, 3) arrays"
            )
        return _natural_pool_cached(tuple(str(p) for p in find_natural_images()))
    pool: list[np.ndarray] = []
    paths: list[str] = []
    for item in spec:
        if isinstance(item, np.ndarray):
            if item.ndim != 3 or item.shape[2] != 3 or min(item.shape[:2]) < 8:
                raise InputError(
                    f"make_rgbd_scene: natural image array has shape {item.shape}; give "
                    "(H, W, 3) float RGB in [0, 1] with H, W >= 8"
                )
            pool.append(np.ascontiguousarray(item, dtype=np.float32))
        else:
            if not Path(item).is_file():
                raise InputError(f"make_rgbd_scene: natural image {item} does not exist; fix the path")
            paths.append(str(item))
    return tuple(pool) + _natural_pool_cached(tuple(paths))


def random_color(rng: np.random.Generator) -> np.ndarray:
    # Mix of saturated and muted colors, never pure black/white (shading needs room).
    base = rng.uniform(0.08, 0.92, size=3)
    grey = base.mean()
    return (grey + (base - grey) * rng.uniform(0.3, 1.3)).clip(0.03, 0.97).astype(np.float32)


def contrasting_color(rng: np.random.Generator, other: np.ndarray) -> np.ndarray:
    for _ in range(8):
        color = random_color(rng)
        if float(np.abs(color - other).sum()) > 0.45:
            return color
    return (1.0 - other).astype(np.float32)


def random_texture(rng: np.random.Generator, pool: Sequence[np.ndarray], p_natural: float) -> dict:
    """A texture description; evaluated later by :func:`paint` at surface coordinates."""
    c1 = random_color(rng)
    tex: dict[str, Any] = {
        "c1": c1,
        "c2": contrasting_color(rng, c1),
        "angle": rng.uniform(0, math.pi),
        "offset": rng.uniform(-10, 10, size=2),
    }
    if rng.random() < p_natural:
        if pool:
            img = pool[int(rng.integers(len(pool)))]
            tex.update(kind="natural", image=img, ppm=rng.uniform(120, 500))
        else:
            grid = rng.random((24, 24, 2)).astype(np.float32)
            tex.update(kind="fractal", grid=grid, period=rng.uniform(0.15, 0.5), octaves=4)
        return tex
    kind = str(rng.choice(["noise", "stripes", "checker", "gradient", "flat"], p=[0.3, 0.2, 0.15, 0.2, 0.15]))
    tex["kind"] = kind
    if kind == "noise":
        tex.update(grid=rng.random((16, 16)).astype(np.float32), period=rng.uniform(0.08, 0.4), octaves=3)
    elif kind in ("stripes", "checker"):
        tex.update(period=rng.uniform(0.05, 0.4))
    elif kind == "gradient":
        tex.update(length=rng.uniform(0.5, 4.0))
    return tex


def _sample_wrapped(grid: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bicubic lookup in a tileable grid at (u, v) in grid cells; shape of u (+ channels)."""
    h, w = grid.shape[:2]
    mu = np.mod(u, w).astype(np.float32)
    mv = np.mod(v, h).astype(np.float32)
    return cv2.remap(grid, mu, mv, interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_WRAP)


def _mirror(coord: np.ndarray, size: int) -> np.ndarray:
    # Triangle wave: tiles the photograph with mirrored copies, so there are no seams.
    period = 2.0 * (size - 1)
    c = np.mod(coord, period)
    return np.where(c > size - 1, period - c, c).astype(np.float32)


def paint(tex: dict, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Evaluate texture ``tex`` at surface coordinates (s, t) in metres -> (h, w, 3) float32."""
    kind = tex["kind"]
    c1, c2 = tex["c1"], tex["c2"]
    s = s + tex["offset"][0]
    t = t + tex["offset"][1]
    cos_a, sin_a = math.cos(tex["angle"]), math.sin(tex["angle"])
    along = s * cos_a + t * sin_a
    if kind == "flat":
        return np.broadcast_to(c1, s.shape + (3,)).astype(np.float32)
    if kind == "gradient":
        w = np.clip(0.5 + along / tex["length"], 0.0, 1.0)[..., None]
        return (c1 + (c2 - c1) * w).astype(np.float32)
    if kind == "stripes":
        w = (np.floor(along / tex["period"]) % 2)[..., None]
        return (c1 + (c2 - c1) * w).astype(np.float32)
    if kind == "checker":
        across = -s * sin_a + t * cos_a
        w = ((np.floor(along / tex["period"]) + np.floor(across / tex["period"])) % 2)[..., None]
        return (c1 + (c2 - c1) * w).astype(np.float32)
    if kind in ("noise", "fractal"):
        grid, period = tex["grid"], tex["period"]
        total = np.zeros(s.shape + grid.shape[2:], dtype=np.float32)
        weight_sum = 0.0
        for octave in range(tex["octaves"]):
            freq = 2.0**octave
            weight = 0.5**octave
            total += weight * _sample_wrapped(grid, s * freq / period + 7.3 * octave, t * freq / period)
            weight_sum += weight
        n = np.clip(total / weight_sum, 0.0, 1.0)
        if kind == "fractal":
            # Photograph-like stand-in: 1/f luminance detail over a two-color blend.
            lum, mix = n[..., 0:1], n[..., 1:2]
            return np.clip((c1 + (c2 - c1) * mix) * (0.6 + 0.8 * lum), 0.0, 1.0).astype(np.float32)
        return (c1 + (c2 - c1) * n[..., None]).astype(np.float32)
    if kind == "natural":
        img = tex["image"]
        ppm = tex["ppm"]
        u = _mirror(s * ppm, img.shape[1])
        v = _mirror(t * ppm, img.shape[0])
        return cv2.remap(img, u, v, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    raise AssertionError(f"unknown texture kind {kind}")  # internal: kinds are fixed above


def scene_seed(seed: int, index: int) -> int:
    """Seed of scene ``index`` in a collection with base ``seed`` (independent streams)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))
