"""Procedural primitives: random shapes (bool masks), textures (float maps in [0, 1]) and compositing.

Shared by the built-in synthetic domains (scenarios/synthetic.py) and the generic pretraining of the
small SAM. Every function takes a numpy Generator and a square side `size`; lengths are given in
pixels, so callers scale them with `size`.
"""
from __future__ import annotations

import cv2
import numpy as np

Color = tuple[float, float, float]


# ---------------------------------------------------------------- textures
def fractal_noise(rng: np.random.Generator, size: int, scale: float = 4, octaves: int = 4,
                  persistence: float = 0.5) -> np.ndarray:
    """Smooth value noise: random grids of `scale * 2**o` cells, bicubically upsampled and summed."""
    out = np.zeros((size, size), np.float32)
    amp = 1.0
    for o in range(octaves):
        cells = max(2, int(round(scale * 2 ** o)))
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        out += amp * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
    return normalize(out)


def normalize(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo + 1e-8)).astype(np.float32)


def stripes(rng: np.random.Generator, size: int, period: float, warp: float = 0.3) -> np.ndarray:
    """Wavy stripes (period in pixels), warped by noise: zebra, bark, sand ripples."""
    theta = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = (xx * np.cos(theta) + yy * np.sin(theta)) / period
    phase += warp * 4 * fractal_noise(rng, size, scale=3, octaves=2)
    return (0.5 + 0.5 * np.sin(2 * np.pi * phase)).astype(np.float32)


def spots(rng: np.random.Generator, size: int, radius: float, density: float = 0.5) -> np.ndarray:
    """Blurry spots of about `radius` pixels covering roughly `density` of the area: leopard, gravel."""
    out = np.zeros((size, size), np.float32)
    n = int(density * size * size / (np.pi * radius ** 2)) + 1
    for x, y, r in zip(rng.uniform(0, size, n), rng.uniform(0, size, n), rng.uniform(0.5, 1.5, n) * radius):
        cv2.circle(out, (int(x), int(y)), max(1, int(r)), float(rng.uniform(0.5, 1.0)), -1)
    return normalize(cv2.GaussianBlur(out, (0, 0), max(0.5, radius / 3)))


def texture(rng: np.random.Generator, size: int, kind: str, scale: float) -> np.ndarray:
    """A texture map in [0, 1]. kind: noise | stripes | spots; scale: feature size in pixels."""
    if kind == "noise":
        return fractal_noise(rng, size, scale=max(2.0, size / scale / 4), octaves=3)
    if kind == "stripes":
        return stripes(rng, size, period=scale)
    if kind == "spots":
        return spots(rng, size, radius=scale / 2)
    raise ValueError(f"unknown texture kind {kind!r} (noise, stripes, spots)")


TEXTURES = ("noise", "stripes", "spots")


def colorize(t: np.ndarray, c0: Color, c1: Color) -> np.ndarray:
    """Map a [0, 1] map to an RGB float image between colours c0 (at 0) and c1 (at 1)."""
    c0, c1 = np.asarray(c0, np.float32), np.asarray(c1, np.float32)
    return c0 + t[..., None] * (c1 - c0)


def random_color(rng: np.random.Generator, lo: float = 0, hi: float = 255) -> Color:
    return tuple(float(v) for v in rng.uniform(lo, hi, 3))


def jitter_color(rng: np.random.Generator, c: Color, amount: float) -> Color:
    return tuple(float(np.clip(v + rng.uniform(-amount, amount), 0, 255)) for v in c)


# ---------------------------------------------------------------- shapes
def blob_mask(rng: np.random.Generator, size: int, center: tuple[float, float], radius: float,
              irregularity: float = 0.25, harmonics: int = 5, aspect: float = 1.0) -> np.ndarray:
    """A star-shaped blob: radius(theta) = radius * (1 + random low-frequency Fourier series)."""
    theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, harmonics + 2):
        r += irregularity / k ** 0.8 * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = radius * np.clip(r, 0.3, None)
    rot = rng.uniform(0, np.pi)
    x, y = r * np.cos(theta) * aspect, r * np.sin(theta) / aspect
    xs = center[0] + x * np.cos(rot) - y * np.sin(rot)
    ys = center[1] + x * np.sin(rot) + y * np.cos(rot)
    return _fill(size, np.stack([xs, ys], 1))


def polygon_mask(rng: np.random.Generator, size: int, center: tuple[float, float], radius: float,
                 vertices: int = 5) -> np.ndarray:
    """A random (possibly concave) polygon with `vertices` corners around `center`."""
    theta = np.sort(rng.uniform(0, 2 * np.pi, vertices))
    r = radius * rng.uniform(0.5, 1.0, vertices)
    return _fill(size, np.stack([center[0] + r * np.cos(theta), center[1] + r * np.sin(theta)], 1))


def ellipse_mask(rng: np.random.Generator, size: int, center: tuple[float, float], radius: float,
                 aspect_range: tuple[float, float] = (1.0, 2.5)) -> np.ndarray:
    out = np.zeros((size, size), np.uint8)
    a = rng.uniform(*aspect_range)
    axes = (max(1, int(radius * np.sqrt(a))), max(1, int(radius / np.sqrt(a))))
    cv2.ellipse(out, (int(center[0]), int(center[1])), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return out.astype(bool)


def stroke_mask(rng: np.random.Generator, size: int, length: float, width: float,
                start: tuple[float, float] | None = None, curvature: float = 0.08) -> np.ndarray:
    """A thin curved stroke (a random walk with smoothly changing heading), `width` pixels wide."""
    steps = 40
    step = length / steps
    x, y = start if start is not None else rng.uniform(0.2 * size, 0.8 * size, 2)
    heading, turn = rng.uniform(0, 2 * np.pi), 0.0
    pts = []
    for _ in range(steps + 1):
        pts.append((x, y))
        turn = 0.8 * turn + rng.normal(0, curvature)
        heading += turn
        x, y = x + step * np.cos(heading), y + step * np.sin(heading)
        if not 0 <= x < size:  # bounce off the border instead of running along it
            heading, x = np.pi - heading, float(np.clip(x, 0, size - 1))
        if not 0 <= y < size:
            heading, y = -heading, float(np.clip(y, 0, size - 1))
    out = np.zeros((size, size), np.uint8)
    cv2.polylines(out, [np.round(np.array(pts)).astype(np.int32)], False, 1, max(1, int(round(width))),
                  lineType=cv2.LINE_8)
    return out.astype(bool)


def random_shape_mask(rng: np.random.Generator, size: int, radius: float | None = None,
                      center: tuple[float, float] | None = None) -> np.ndarray:
    """One of blob / polygon / ellipse / stroke, at a random place and size (generic pretraining)."""
    radius = radius if radius is not None else rng.uniform(0.06, 0.3) * size
    center = center if center is not None else tuple(rng.uniform(radius, size - radius, 2))
    kind = rng.integers(4)
    if kind == 0:
        return blob_mask(rng, size, center, radius, irregularity=rng.uniform(0.1, 0.5))
    if kind == 1:
        return polygon_mask(rng, size, center, radius, vertices=int(rng.integers(3, 9)))
    if kind == 2:
        return ellipse_mask(rng, size, center, radius)
    return stroke_mask(rng, size, length=3 * radius, width=max(2.0, radius / 4), start=center)


def _fill(size: int, pts: np.ndarray) -> np.ndarray:
    out = np.zeros((size, size), np.uint8)
    cv2.fillPoly(out, [np.round(pts).astype(np.int32)], 1)
    return out.astype(bool)


# ---------------------------------------------------------------- compositing
def soft_alpha(mask: np.ndarray, blur: float) -> np.ndarray:
    """A float alpha from a bool mask, feathered by a Gaussian of `blur` pixels (0 = hard edge)."""
    a = mask.astype(np.float32)
    return cv2.GaussianBlur(a, (0, 0), blur) if blur > 0 else a


def blend(base: np.ndarray, layer: np.ndarray | Color, alpha: np.ndarray) -> np.ndarray:
    """base * (1 - alpha) + layer * alpha on float RGB images; `layer` may be one colour.

    Only the bounding box of alpha > 0 is computed (objects are small; this is the hot loop).
    """
    out = base.astype(np.float32)  # a copy
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        return out
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    layer = np.asarray(layer, np.float32)
    patch = layer[box] if layer.ndim == 3 else layer
    out[box] += (patch - out[box]) * alpha[box][..., None].astype(np.float32)
    return out


def vignette(size: int, center: tuple[float, float], strength: float) -> np.ndarray:
    """A multiplicative brightness map falling off from `center` (endoscope / dermoscope lighting)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = np.hypot(xx - center[0], yy - center[1]) / size
    return np.clip(1 - strength * d ** 2 * 2, 0.05, 1).astype(np.float32)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
