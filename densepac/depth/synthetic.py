"""Procedural RGB-D scenes for training and testing guided depth upsampling.

:func:`make_rgbd_scene` renders a small z-buffered world seen by a pinhole camera: a
background (one slanted plane, or a floor meeting a wall), a few occluders (slanted planar
polygons, boxes, spheres) and color-only decals. Surfaces carry textures (value noise,
stripes, checkers, gradients, flat color and natural-image patches when such images are
available) mapped in metric surface coordinates, so they foreshorten with the geometry.

The scenes deliberately hold the two cases that make guided upsampling hard:

- color edges without a depth edge (stripes, checkers, decals inside one surface);
- depth edges with weak color contrast ("camouflaged" occluders that copy the color of
  what they hide, with only a slight shading change).

Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``; each surface's
texture takes its own child generator, so the geometry of a seed does not depend on which
natural images this machine has.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from densepac.check import check_int
from densepac.data.procedural import natural_pool, paint, random_texture
from densepac.errors import InputError


@dataclass(frozen=True)
class SceneOptions:
    """Knobs of :func:`make_rgbd_scene` (pass them as keyword arguments).

    Attributes:
        min_objects, max_objects: number of occluders, drawn uniformly in this range.
        p_floor: probability of a floor + wall background instead of one slanted plane.
        p_camouflage: per occluder, probability that it copies the color behind it
            (a depth edge with weak color contrast).
        p_decal: probability of each of up to three color-only decals on the background.
        p_natural: per surface, probability of a natural-image texture (falls back to
            fractal color noise when no natural image is available).
        natural_images: ``"auto"`` (look for sample photographs shipped by installed
            packages), ``None`` (never use photographs) or a sequence of image paths or
            ``(H, W, 3)`` float arrays in [0, 1].
        focal: focal length in pixels; default ``0.8 * width`` (about a 64 degree
            horizontal field of view, close to a Kinect).
        near, far: depth range in metres; the rendered depth is clipped to it.
        rgb_noise: standard deviation of additive Gaussian sensor noise on RGB.
        blur_sigma: Gaussian blur (pixels) applied to RGB only, like optics; depth
            edges stay sharp.
        max_rods: thin structures (poles, cables, chair legs: cylinders 1.5-5 px wide,
            often crossing the frame), drawn uniformly in ``0..max_rods``.
        max_cylinders: curved surfaces (cylinders 12 px to a quarter of the view wide).
        depth_scale: the whole scene's depth is multiplied by a factor drawn log-uniformly
            from this range (``(1, 1)``: off), so scenes span indoor and outdoor distances;
            colour is unchanged, as a scaled world looks the same to a camera.
    """

    min_objects: int = 2
    max_objects: int = 6
    p_floor: float = 0.4
    p_camouflage: float = 0.2
    p_decal: float = 0.5
    p_natural: float = 0.2
    natural_images: Any = "auto"
    focal: float | None = None
    near: float = 0.5
    far: float = 10.0
    rgb_noise: float = 0.01
    blur_sigma: float = 0.6
    max_rods: int = 4
    max_cylinders: int = 2
    depth_scale: tuple[float, float] = (0.5, 3.0)

    def validate(self) -> None:
        """Raise InputError for out-of-range values."""
        if not 0 <= self.min_objects <= self.max_objects:
            raise InputError(
                f"make_rgbd_scene: need 0 <= min_objects <= max_objects, got "
                f"{self.min_objects}, {self.max_objects}; fix the two options"
            )
        for name in ("p_floor", "p_camouflage", "p_decal", "p_natural"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"make_rgbd_scene: {name}={value} is not a probability; use a value in [0, 1]")
        if not 0 < self.near < self.far:
            raise InputError(f"make_rgbd_scene: need 0 < near < far, got near={self.near}, far={self.far}; fix them")
        if self.focal is not None and not self.focal > 0:
            raise InputError(f"make_rgbd_scene: focal={self.focal} must be positive pixels (or None)")
        if self.rgb_noise < 0 or self.blur_sigma < 0:
            raise InputError("make_rgbd_scene: rgb_noise and blur_sigma must be >= 0")
        if self.max_rods < 0 or self.max_cylinders < 0:
            raise InputError("make_rgbd_scene: max_rods and max_cylinders must be >= 0")
        lo, hi = self.depth_scale
        if not 0 < lo <= hi:
            raise InputError(
                f"make_rgbd_scene: depth_scale={self.depth_scale} must be (low, high) with 0 < low <= high"
            )


@dataclass
class _Canvas:
    """Z-buffer state of one scene being rendered."""

    rgb: np.ndarray  # (H, W, 3) float32
    depth: np.ndarray  # (H, W) float32, inf where nothing was drawn yet
    object_id: np.ndarray  # (H, W) int32
    shading: np.ndarray  # (H, W) float32 Lambert factor of the visible surface
    xs: np.ndarray  # (W,) normalized image x = (u - cx) / f
    ys: np.ndarray  # (H,) normalized image y
    focal: float
    light: np.ndarray  # unit vector towards the light, camera frame
    ambient: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.depth.shape  # type: ignore[return-value]

    def window(self, y0: float, y1: float, x0: float, x1: float) -> tuple[slice, slice] | None:
        """Pixel window [y0, y1) x [x0, x1) clipped to the image; None when empty."""
        h, w = self.shape
        ya, yb = max(int(math.floor(y0)), 0), min(int(math.ceil(y1)), h)
        xa, xb = max(int(math.floor(x0)), 0), min(int(math.ceil(x1)), w)
        if ya >= yb or xa >= xb:
            return None
        return slice(ya, yb), slice(xa, xb)

    def shade(self, normal: np.ndarray) -> np.ndarray | float:
        """Lambert factor for camera-facing unit normals (..., 3)."""
        lam = np.maximum(normal @ self.light, 0.0)
        return self.ambient + (1.0 - self.ambient) * lam

    def draw(
        self,
        win: tuple[slice, slice],
        mask: np.ndarray,
        z: np.ndarray,
        albedo: np.ndarray | None,
        shade: np.ndarray | float,
        obj: int,
        camouflage: float | None = None,
    ) -> None:
        """Z-test ``z`` inside ``mask`` and write ``albedo * shade`` where it wins.

        With ``camouflage`` the albedo is that of the surface behind (times the factor),
        so only the shading change (and the factor) marks the depth edge.
        """
        zb = self.depth[win]
        keep = mask & (z < zb) & (z > 0)
        if not keep.any():
            return
        shade_map = np.broadcast_to(np.asarray(shade, dtype=np.float32), z.shape)[keep]
        rgb = self.rgb[win]
        shading = self.shading[win]
        if camouflage is not None:
            behind = rgb[keep] / np.maximum(shading[keep], 1e-3)[:, None]
            rgb[keep] = behind * (camouflage * shade_map)[:, None]
        else:
            rgb[keep] = albedo[keep] * shade_map[:, None]
        zb[keep] = z[keep]
        shading[keep] = shade_map
        self.object_id[win][keep] = obj


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _plane_axes(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two orthonormal in-plane directions for texture coordinates."""
    helper = np.array([0.0, 1.0, 0.0]) if abs(normal[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = _unit(np.cross(helper, normal))
    return e1, np.cross(normal, e1)


def _draw_plane(
    canvas: _Canvas,
    win: tuple[slice, slice],
    mask: np.ndarray,
    normal: np.ndarray,
    k: float,
    tex: dict | None,
    obj: int,
    camouflage: float | None = None,
) -> None:
    """Render the plane ``normal . X = k`` (k > 0, camera at the origin) inside ``mask``."""
    x = canvas.xs[win[1]][None, :]
    y = canvas.ys[win[0]][:, None]
    # A point on the ray (x z, y z, z) lies on the plane when z (n . (x, y, 1)) = k.
    denom = normal[0] * x + normal[1] * y + normal[2]
    valid = mask & (denom > 1e-6)
    z = np.where(valid, k / np.where(valid, denom, 1.0), np.inf).astype(np.float32)
    facing = -_unit(normal)  # n points away from the camera since k > 0
    factor = float(canvas.shade(facing))
    if camouflage is not None:
        canvas.draw(win, valid, z, None, factor, obj, camouflage=camouflage)
        return
    e1, e2 = _plane_axes(_unit(normal))
    s = z * (e1[0] * x + e1[1] * y + e1[2])
    t = z * (e2[0] * x + e2[1] * y + e2[2])
    albedo = paint(tex, np.where(valid, s, 0.0), np.where(valid, t, 0.0))
    canvas.draw(win, valid, z, albedo, factor, obj)


def _inverse_depth_plane(
    inv_centre: float, slope_x: float, slope_y: float, x0: float, y0: float
) -> tuple[np.ndarray, float]:
    """Plane (normal, k=1) whose inverse depth is ``inv_centre + slope . (x - x0, y - y0)``.

    Planes have inverse depth affine in normalized image coordinates, which makes it easy
    to bound the depth range over a window.
    """
    c = inv_centre - slope_x * x0 - slope_y * y0
    return np.array([slope_x, slope_y, c], dtype=np.float64), 1.0


def _polygon_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """Boolean mask of a polygon given in window pixel coordinates (subpixel precise)."""
    mask = np.zeros(shape, dtype=np.uint8)
    # shift=4: vertices with 1/16 px precision, so thin slivers don't snap around.
    pts = np.round(points * 16.0).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _project(canvas: _Canvas, points: np.ndarray) -> np.ndarray:
    """(N, 3) camera points -> (N, 2) pixel (u, v); pixel centres at integers."""
    h, w = canvas.shape
    u = canvas.focal * points[:, 0] / points[:, 2] + (w - 1) / 2.0
    v = canvas.focal * points[:, 1] / points[:, 2] + (h - 1) / 2.0
    return np.stack([u, v], axis=1)


def _background(canvas: _Canvas, rng: np.random.Generator, opts: SceneOptions, textures: list) -> float:
    """Draw the background; returns its typical depth (m)."""
    h, w = canvas.shape
    full = (slice(0, h), slice(0, w))
    everywhere = np.ones((h, w), dtype=bool)
    x_max, y_max = float(np.abs(canvas.xs).max()), float(np.abs(canvas.ys).max())
    if rng.random() < opts.p_floor:
        # A wall facing the camera (slightly turned) and a floor below the camera.
        # +-25 % inverse-depth slope keeps the wall within 0.8-1.33x its centre depth.
        wall_depth = rng.uniform(min(3.5, 0.5 * opts.far), 0.7 * opts.far)
        inv = 1.0 / wall_depth
        sx = rng.uniform(-0.25, 0.25) * inv / max(x_max, 1e-6)
        wall_n, wall_k = _inverse_depth_plane(inv, sx, 0.0, 0.0, 0.0)
        _draw_plane(canvas, full, everywhere, wall_n, wall_k, textures.pop(), 0)
        cam_height = rng.uniform(0.9, 1.6)
        floor_n = np.array([0.0, 1.0, rng.uniform(-0.05, 0.05)])
        _draw_plane(canvas, full, everywhere, floor_n, cam_height, textures.pop(), 1)
        return wall_depth
    centre = rng.uniform(3.0, min(6.5, opts.far * 0.65))
    inv = 1.0 / centre
    # Slopes bounded so the inverse depth stays within +-55 % (depth in [0.65, 2.2] x
    # centre) and the far corner stays inside ``far``.
    budget = min(0.55 * inv, inv - 1.0 / (0.95 * opts.far))
    share = rng.uniform(0, 1)
    sx = rng.choice([-1, 1]) * share * budget / max(x_max, 1e-6)
    sy = rng.choice([-1, 1]) * (1 - share) * budget / max(y_max, 1e-6)
    n, k = _inverse_depth_plane(inv, sx, sy, 0.0, 0.0)
    _draw_plane(canvas, full, everywhere, n, k, textures.pop(), 0)
    textures.pop()  # keep the texture stream aligned with the floor branch
    return centre


def _decal(canvas: _Canvas, rng: np.random.Generator, tex: dict) -> None:
    """Paint a color-only polygon over background pixels (no depth change)."""
    h, w = canvas.shape
    poly = _random_polygon(rng, h, w, 0.05, 0.2)
    win = canvas.window(poly[:, 1].min(), poly[:, 1].max() + 1, poly[:, 0].min(), poly[:, 0].max() + 1)
    if win is None:
        return
    shape = (win[0].stop - win[0].start, win[1].stop - win[1].start)
    mask = _polygon_mask(shape, poly - [win[1].start, win[0].start])
    mask &= canvas.object_id[win] <= 1
    yy, xx = np.mgrid[win[0], win[1]].astype(np.float32)
    albedo = paint(tex, xx / canvas.focal, yy / canvas.focal)
    # Paint only: the decal keeps the depth and shading of the surface it lies on.
    canvas.rgb[win][mask] = albedo[mask] * canvas.shading[win][mask][:, None]


def _random_polygon(rng: np.random.Generator, h: int, w: int, r_min: float, r_max: float) -> np.ndarray:
    """Star-shaped polygon (N, 2) in pixel (u, v) with radius a fraction of min(h, w)."""
    centre = np.array([rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h])
    radius = rng.uniform(r_min, r_max) * min(h, w)
    count = int(rng.integers(3, 9))
    angles = np.sort(rng.uniform(0, 2 * math.pi, size=count))
    radii = radius * rng.uniform(0.5, 1.0, size=count)
    return centre + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)


def _occluder_depth(rng: np.random.Generator, canvas: _Canvas, u: float, v: float, opts: SceneOptions) -> float:
    """A depth in front of whatever is at pixel (u, v)."""
    h, w = canvas.shape
    behind = float(canvas.depth[int(np.clip(v, 0, h - 1)), int(np.clip(u, 0, w - 1))])
    if not math.isfinite(behind):
        behind = opts.far
    low = max(opts.near * 1.5, 0.8)
    high = max(low + 0.1, behind * 0.85)
    return rng.uniform(low, high)


def _polygon_occluder(
    canvas: _Canvas,
    rng: np.random.Generator,
    opts: SceneOptions,
    tex: dict,
    obj: int,
    camouflage: float | None,
) -> None:
    h, w = canvas.shape
    poly = _random_polygon(rng, h, w, 0.1, 0.4)
    uc, vc = poly.mean(axis=0)
    zc = _occluder_depth(rng, canvas, uc, vc, opts)
    inv = 1.0 / zc
    extent = max(np.ptp(poly[:, 0]), np.ptp(poly[:, 1]), 1.0) / canvas.focal
    # Inverse-depth change across the polygon at most +-35 %: visibly slanted, never
    # passing behind the camera.
    sx = rng.uniform(-0.35, 0.35) * inv / extent
    sy = rng.uniform(-0.35, 0.35) * inv / extent
    x0 = (uc - (w - 1) / 2.0) / canvas.focal
    y0 = (vc - (h - 1) / 2.0) / canvas.focal
    n, k = _inverse_depth_plane(inv, sx, sy, x0, y0)
    win = canvas.window(poly[:, 1].min(), poly[:, 1].max() + 1, poly[:, 0].min(), poly[:, 0].max() + 1)
    if win is None:
        return
    shape = (win[0].stop - win[0].start, win[1].stop - win[1].start)
    mask = _polygon_mask(shape, poly - [win[1].start, win[0].start])
    _draw_plane(canvas, win, mask, n, k, tex, obj, camouflage)


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return r_pitch @ r_yaw


def _random_centre(canvas: _Canvas, rng: np.random.Generator, opts: SceneOptions, margin: float) -> np.ndarray:
    """A 3-D point in front of the background at a random pixel, ``margin`` m clear of the camera."""
    h, w = canvas.shape
    u, v = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    z = max(_occluder_depth(rng, canvas, u, v, opts), margin + opts.near)
    x = (u - (w - 1) / 2.0) / canvas.focal
    y = (v - (h - 1) / 2.0) / canvas.focal
    return np.array([x * z, y * z, z])


def _box_occluder(
    canvas: _Canvas,
    rng: np.random.Generator,
    opts: SceneOptions,
    tex: dict,
    obj: int,
    camouflage: float | None,
) -> None:
    h, w = canvas.shape
    centre = _random_centre(canvas, rng, opts, margin=0.0)
    # Metric size proportional to distance keeps the box between ~10 % and ~35 % of the view.
    view = min(h, w) / canvas.focal * centre[2]
    half = rng.uniform(0.06, 0.2, size=3) * view
    radius = float(np.linalg.norm(half))
    centre[2] = max(centre[2], radius + opts.near)
    rot = _rotation(rng.uniform(-math.pi, math.pi), rng.uniform(-0.5, 0.5))
    for axis in range(3):
        for sign in (-1.0, 1.0):
            normal = rot[:, axis] * sign
            face_centre = centre + normal * half[axis]
            if normal @ face_centre >= 0:  # back face
                continue
            a, b = [i for i in range(3) if i != axis]
            corners = np.array(
                [
                    face_centre + rot[:, a] * half[a] * da + rot[:, b] * half[b] * db
                    for da, db in ((-1, -1), (-1, 1), (1, 1), (1, -1))
                ]
            )
            pix = _project(canvas, corners)
            win = canvas.window(pix[:, 1].min(), pix[:, 1].max() + 1, pix[:, 0].min(), pix[:, 0].max() + 1)
            if win is None:
                continue
            shape = (win[0].stop - win[0].start, win[1].stop - win[1].start)
            mask = _polygon_mask(shape, pix - [win[1].start, win[0].start])
            # Plane written as n' . X = k' with k' > 0 (n' points away from the camera).
            k = -float(normal @ face_centre)
            _draw_plane(canvas, win, mask, -normal, k, tex, obj, camouflage)


def _sphere_occluder(
    canvas: _Canvas,
    rng: np.random.Generator,
    opts: SceneOptions,
    tex: dict,
    obj: int,
    camouflage: float | None,
) -> None:
    h, w = canvas.shape
    centre = _random_centre(canvas, rng, opts, margin=0.0)
    radius = rng.uniform(0.05, 0.18) * min(h, w) / canvas.focal * centre[2]
    centre[2] = max(centre[2], radius + opts.near)
    dist = float(np.linalg.norm(centre))
    uv = _project(canvas, centre[None])[0]
    # Angular radius of the silhouette, widened for the off-axis stretch of the ellipse.
    stretch = 1.0 + float(np.linalg.norm(centre[:2])) / centre[2]
    reach = canvas.focal * math.tan(math.asin(min(radius / dist, 0.99))) * stretch
    win = canvas.window(uv[1] - reach - 1, uv[1] + reach + 2, uv[0] - reach - 1, uv[0] + reach + 2)
    if win is None:
        return
    x = canvas.xs[win[1]][None, :]
    y = canvas.ys[win[0]][:, None]
    # Ray (x, y, 1) t hits the sphere where |t d - C|^2 = r^2; z equals t since d_z = 1.
    a = x * x + y * y + 1.0
    b = x * centre[0] + y * centre[1] + centre[2]
    disc = b * b - a * (dist * dist - radius * radius)
    hit = disc > 0
    z = np.where(hit, (b - np.sqrt(np.maximum(disc, 0.0))) / a, np.inf).astype(np.float32)
    zf = np.where(hit, z, 0.0)
    q = np.stack([x * zf - centre[0], y * zf - centre[1], zf - centre[2]], axis=-1) / radius
    q = np.where(hit[..., None], q, np.array([0.0, 0.0, -1.0]))
    shade = canvas.shade(q).astype(np.float32)
    if camouflage is not None:
        canvas.draw(win, hit, z, None, shade, obj, camouflage=camouflage)
        return
    s = radius * np.arctan2(q[..., 0], -q[..., 2])
    t = radius * np.arcsin(np.clip(q[..., 1], -1.0, 1.0))
    canvas.draw(win, hit, z, paint(tex, s, t), shade, obj)


def _rod_occluder(
    canvas: _Canvas,
    rng: np.random.Generator,
    opts: SceneOptions,
    tex: dict,
    obj: int,
    width: float,
) -> None:
    """A cylinder ``width`` px wide between two image points, often reaching past the frame.

    Its depth follows the axis linearly between two depths in front of what is behind its
    ends, bulging towards the camera across its width; shading follows the round normal.
    """
    h, w = canvas.shape
    p0 = np.array([rng.uniform(-0.2, 1.2) * w, rng.uniform(-0.2, 1.2) * h])
    angle = rng.uniform(0, math.pi)
    length = rng.uniform(0.3, 1.2) * math.hypot(h, w)
    p1 = p0 + length * np.array([math.cos(angle), math.sin(angle)])
    z0 = _occluder_depth(rng, canvas, *np.clip(p0, 0, [w - 1, h - 1]), opts)
    z1 = _occluder_depth(rng, canvas, *np.clip(p1, 0, [w - 1, h - 1]), opts)
    half = width / 2.0
    win = canvas.window(
        min(p0[1], p1[1]) - half - 1,
        max(p0[1], p1[1]) + half + 2,
        min(p0[0], p1[0]) - half - 1,
        max(p0[0], p1[0]) + half + 2,
    )
    if win is None:
        return
    yy, xx = np.mgrid[win[0], win[1]].astype(np.float32)
    axis = (p1 - p0) / length
    rel_x, rel_y = xx - p0[0], yy - p0[1]
    along = np.clip((rel_x * axis[0] + rel_y * axis[1]) / length, 0.0, 1.0)
    across = (rel_x * -axis[1] + rel_y * axis[0]) / half  # -1 .. 1 across the width
    hit = np.abs(across) <= 1.0
    z_axis = z0 + (z1 - z0) * along
    bulge = np.sqrt(np.clip(1.0 - across * across, 0.0, 1.0))
    radius = half * z_axis / canvas.focal  # metres
    z = np.where(hit, z_axis - radius * bulge, np.inf).astype(np.float32)
    # Round normal: sideways in the image plane across the width, towards the camera in the middle.
    side = np.stack([-axis[1] * across, axis[0] * across, -bulge], axis=-1)
    shade = canvas.shade(side / np.maximum(np.linalg.norm(side, axis=-1, keepdims=True), 1e-6)).astype(np.float32)
    albedo = paint(tex, along * length * z_axis / canvas.focal, across * radius)
    canvas.draw(win, hit, z, albedo, shade, obj)


def make_rgbd_scene(seed: int, height: int = 240, width: int = 320, **options: Any) -> dict[str, np.ndarray]:
    """Render one procedural RGB-D scene, deterministic from ``seed``.

    Args:
        seed: any non-negative int; the same seed (and the same natural-image pool, see
            ``natural_images``) always gives the same scene.
        height, width: image size in pixels (each >= 8).
        **options: fields of :class:`SceneOptions`.

    Returns:
        dict with ``rgb`` float32 ``(H, W, 3)`` in [0, 1], ``depth`` float32 ``(H, W)``
        metres in ``[near, far]`` times the scene's ``depth_scale`` factor (every pixel valid) and ``object_id``
        int32 ``(H, W)`` (0 background / wall, 1 floor, 2.. occluders).
    """
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(SceneOptions)})
    if unknown:
        valid = ", ".join(f.name for f in dataclasses.fields(SceneOptions))
        raise InputError(f"make_rgbd_scene: unknown option(s) {', '.join(unknown)}; valid options are {valid}")
    opts = SceneOptions(**options)
    opts.validate()
    check_int(seed, "make_rgbd_scene: seed", minimum=0)
    if int(height) < 8 or int(width) < 8:
        raise InputError(f"make_rgbd_scene: size {height}x{width} is too small; use at least 8x8 pixels")
    h, w = int(height), int(width)
    pool = natural_pool(opts.natural_images)
    rng = np.random.default_rng(int(seed))

    focal = float(opts.focal) if opts.focal is not None else 0.8 * w
    light = _unit(np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.9, -0.4), -rng.uniform(0.4, 0.9)]))
    canvas = _Canvas(
        rgb=np.zeros((h, w, 3), dtype=np.float32),
        depth=np.full((h, w), np.inf, dtype=np.float32),
        object_id=np.zeros((h, w), dtype=np.int32),
        shading=np.ones((h, w), dtype=np.float32),
        xs=((np.arange(w, dtype=np.float32) - (w - 1) / 2.0) / focal).astype(np.float32),
        ys=((np.arange(h, dtype=np.float32) - (h - 1) / 2.0) / focal).astype(np.float32),
        focal=focal,
        light=light,
        ambient=float(rng.uniform(0.5, 0.7)),
    )
    num_objects = int(rng.integers(opts.min_objects, opts.max_objects + 1))
    # One child generator per texture: texture draws (and whether photographs exist) never
    # shift the geometry stream.
    tex_seeds = rng.integers(0, 2**63 - 1, size=num_objects + 5)
    textures = [random_texture(np.random.default_rng(int(s)), pool, opts.p_natural) for s in tex_seeds]
    textures.reverse()  # popped from the end, in draw order

    _background(canvas, rng, opts, textures)
    for _ in range(3):
        tex = textures.pop()
        if rng.random() < opts.p_decal:
            _decal(canvas, rng, tex)
    painters = (_polygon_occluder, _box_occluder, _sphere_occluder)
    for index in range(num_objects):
        painter = painters[int(rng.choice(3, p=[0.4, 0.35, 0.25]))]
        camouflage = float(rng.uniform(0.93, 1.07)) if rng.random() < opts.p_camouflage else None
        painter(canvas, rng, opts, textures.pop(), index + 2, camouflage)
    # Thin structures and curved surfaces come from their own generator, so adding them
    # leaves every earlier part of a seed's scene as it was.
    extra = np.random.default_rng([int(seed), 1])
    widths = [extra.uniform(1.5, 5.0) for _ in range(int(extra.integers(0, opts.max_rods + 1)))]
    widths += [
        extra.uniform(12.0, max(13.0, 0.25 * min(h, w))) for _ in range(int(extra.integers(0, opts.max_cylinders + 1)))
    ]
    for k, width in enumerate(widths):
        tex = random_texture(np.random.default_rng(int(extra.integers(0, 2**63 - 1))), pool, opts.p_natural)
        _rod_occluder(canvas, extra, opts, tex, num_objects + 2 + k, width)

    factor = math.exp(extra.uniform(math.log(opts.depth_scale[0]), math.log(opts.depth_scale[1])))
    depth = (np.clip(canvas.depth, opts.near, opts.far) * factor).astype(np.float32)
    rgb = canvas.rgb
    if opts.blur_sigma > 0:
        rgb = cv2.GaussianBlur(rgb, (0, 0), opts.blur_sigma)
    if opts.rgb_noise > 0:
        rgb = rgb + rng.normal(0.0, opts.rgb_noise, size=rgb.shape).astype(np.float32)
    rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
    return {"rgb": rgb, "depth": depth, "object_id": canvas.object_id}


#: Seed, size and degradation of ``datasets/samples/`` (``make_synthetic_rgbd.py --sample``).
DEMO_SEED = 10


DEMO_SIZE = (240, 320)


DEMO_SCALE = 8


DEMO_HOLES = 0.02


def make_demo_sample(seed: int = DEMO_SEED) -> dict[str, np.ndarray]:
    """The demo scene: ``rgb`` (240, 320, 3), ``depth`` (240, 320) m, ``depth_lr`` (30, 40) m.

    The LR map is x8 point-sampled with a few holes. Natural-image textures are off so the
    result does not depend on which packages are installed.
    """
    from densepac.depth.degrade import simulate_lr

    # The committed sample predates rods, cylinders and depth scaling: keep its recipe.
    scene = make_rgbd_scene(seed, *DEMO_SIZE, natural_images=None, max_rods=0, max_cylinders=0, depth_scale=(1, 1))
    lr = simulate_lr(scene["depth"], DEMO_SCALE, "point", holes=DEMO_HOLES, rng=seed)
    return {"rgb": scene["rgb"], "depth": scene["depth"], "depth_lr": lr}
