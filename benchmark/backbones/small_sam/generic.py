"""The generic synthetic distribution the small SAM is pretrained on (issue 4; pretrain.py beside this module).

Scenes are "natural-ish but clean": a background (plain, gradient, smooth noise, stripes or checker),
2-6 objects of many kinds (ellipses, convex polygons, stars, blobs, rings, rotated rectangles) with
random sizes, colours chosen to contrast with what lies beneath them, and simple textures (flat,
gradient, stripes, dots, noise). Later objects occlude earlier ones, so an object's mask is what stays
visible. The hard cases (camouflage, shadows, low contrast) are left to the built-in stream's domains.

Everything is a pure function of an integer seed, so the same (seed, index) always gives the same scene.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np
import torch

BACKGROUNDS = ("plain", "gradient", "noise", "stripes", "checker")
SHAPES = ("ellipse", "polygon", "star", "blob", "ring", "rectangle")
TEXTURES = ("flat", "gradient", "stripes", "dots", "noise")
MIN_CONTRAST = 90.0  # minimum L2 distance (0-255 RGB) between an object's colour and the colour under it
MIN_VISIBLE_FRACTION = 0.004  # an object must keep at least this fraction of the image visible to be a target


@dataclass
class GenericScene:
    """One generated image with the visible mask of every object (painting order)."""

    image: np.ndarray  # uint8 (S, S, 3)
    masks: list[np.ndarray]  # bool (S, S) each, visible part after occlusion


def scene_seed(seed: int, index: int) -> int:
    """A 64-bit seed depending only on (seed, index); stable across processes and platforms."""
    digest = hashlib.sha256(f"generic:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def _contrasting_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour at least MIN_CONTRAST away from `under` (falls back to the complement)."""
    for _ in range(20):
        c = _random_colour(rng)
        if np.linalg.norm(c - under) >= MIN_CONTRAST:
            return c
    return 255.0 - under


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a coarse random grid upsampled bicubically."""
    coarse = rng.uniform(0, 1, size=(scale, scale)).astype(np.float32)
    up = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(up, 0, 1)


def _pattern(rng: np.random.Generator, kind: str, size: int, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """A (size, size, 3) float image of a two-colour pattern of the given kind."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind in ("plain", "flat"):
        t = np.zeros((size, size), np.float32)
    elif kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        t = (np.cos(a) * xx + np.sin(a) * yy)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == "noise":
        t = _smooth_noise(rng, size, int(rng.integers(3, 12)))
    elif kind == "stripes":
        a = rng.uniform(0, np.pi)
        freq = rng.uniform(4, 16)
        t = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * freq * (np.cos(a) * xx + np.sin(a) * yy)))
    elif kind == "checker":
        n = int(rng.integers(4, 12))
        t = ((np.floor(xx * n) + np.floor(yy * n)) % 2).astype(np.float32)
    elif kind == "dots":
        n = rng.uniform(8, 20)
        t = ((np.sin(2 * np.pi * n * xx) * np.sin(2 * np.pi * n * yy)) > 0.5).astype(np.float32)
    else:
        raise ValueError(f"unknown pattern kind {kind!r}")
    return c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]


def _shape_mask(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """A bool (size, size) mask of one shape with random centre, size and rotation."""
    m = np.zeros((size, size), np.uint8)
    r = rng.uniform(0.06, 0.28) * size  # characteristic radius
    cx, cy = rng.uniform(0.1, 0.9, size=2) * size
    rot = rng.uniform(0, 2 * np.pi)

    def poly(radii: np.ndarray, angles: np.ndarray) -> None:
        pts = np.stack([cx + radii * np.cos(angles + rot), cy + radii * np.sin(angles + rot)], axis=1)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)

    if kind == "ellipse":
        axes = (max(2, int(r)), max(2, int(r * rng.uniform(0.35, 1.0))))
        cv2.ellipse(m, (int(cx), int(cy)), axes, float(np.degrees(rot)), 0, 360, 1, -1)
    elif kind == "polygon":
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        poly(r * rng.uniform(0.7, 1.0, n), angles)
    elif kind == "star":
        n = int(rng.integers(4, 9))
        angles = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
        radii = np.where(np.arange(2 * n) % 2 == 0, r, r * rng.uniform(0.35, 0.6))
        poly(radii, angles)
    elif kind == "blob":
        angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        radii = np.ones(64)
        for k in range(1, 5):  # a few low Fourier harmonics give a smooth irregular outline
            radii += rng.uniform(-0.25, 0.25) / k * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
        poly(r * np.clip(radii, 0.3, None), angles)
    elif kind == "ring":
        outer = max(6, int(r))
        thick = max(3, int(outer * rng.uniform(0.25, 0.5)))
        cv2.circle(m, (int(cx), int(cy)), outer, 1, -1)
        cv2.circle(m, (int(cx), int(cy)), outer - thick, 0, -1)
    elif kind == "rectangle":
        w, h = r * rng.uniform(0.6, 1.4), r * rng.uniform(0.3, 1.0)
        box = cv2.boxPoints(((float(cx), float(cy)), (2 * w, 2 * h), float(np.degrees(rot))))
        cv2.fillPoly(m, [np.round(box).astype(np.int32)], 1)
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    return m.astype(bool)


def generate_scene(rng: np.random.Generator, size: int = 256) -> GenericScene:
    """Paint a background and 2-6 occluding objects; return the image and the visible masks."""
    bg_kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    c1 = _random_colour(rng)
    c2 = c1 + rng.uniform(-60, 60, 3) if bg_kind != "plain" else c1  # mild background patterns
    image = _pattern(rng, bg_kind, size, c1, np.clip(c2, 0, 255))
    masks: list[np.ndarray] = []
    for _ in range(int(rng.integers(2, 7))):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        m = _shape_mask(rng, shape, size)
        if m.sum() < 16:
            continue
        under = image[m].mean(axis=0)
        base = _contrasting_colour(rng, under)
        tex = TEXTURES[int(rng.integers(len(TEXTURES)))]
        # texture colours stay close to the base colour so the object reads as one region
        other = np.clip(base + rng.uniform(-45, 45, 3), 0, 255)
        image[m] = _pattern(rng, tex, size, base, other)[m]
        masks = [prev & ~m for prev in masks]
        masks.append(m)
    noise = rng.normal(0, rng.uniform(0, 6), size=image.shape)  # mild sensor noise
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    return GenericScene(image=image, masks=masks)


def _targetable(scene: GenericScene) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the objects with enough visible area to be targets, every object's visible area)."""
    size = scene.image.shape[0] * scene.image.shape[1]
    areas = np.array([m.sum() for m in scene.masks], dtype=np.float64)
    return np.flatnonzero(areas >= MIN_VISIBLE_FRACTION * size), areas


def pick_target(scene: GenericScene, rng: np.random.Generator) -> np.ndarray:
    """A random object mask among those with enough visible area (the largest one if none has)."""
    ok, areas = _targetable(scene)
    if len(ok) == 0:
        return scene.masks[int(np.argmax(areas))]
    return scene.masks[int(rng.choice(ok))]


def pick_targets(scene: GenericScene, rng: np.random.Generator, k: int) -> list[np.ndarray]:
    """Up to k distinct object masks with enough visible area, in random order (the largest one alone
    if none has enough)."""
    if k <= 0:
        raise ValueError(f"pick_targets: k must be positive, got {k}")
    ok, areas = _targetable(scene)
    if len(ok) == 0:
        return [scene.masks[int(np.argmax(areas))]]
    chosen = rng.permutation(ok)[:k]
    return [scene.masks[int(i)] for i in chosen]


def sample_inside(mask: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k (x, y) pixel-centre points drawn uniformly from the mask's pixels (float32 (k, 2))."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("cannot sample points inside an empty mask")
    idx = rng.choice(len(ys), size=k, replace=len(ys) < k)
    return np.stack([xs[idx], ys[idx]], axis=1).astype(np.float32) + 0.5


def generic_item(seed: int, index: int, size: int = 256, n_points: int = 3) -> dict:
    """One evaluation item in the sample contract of docs/design.md §1 (points inside the target)."""
    rng = np.random.default_rng(scene_seed(seed, index))
    scene = generate_scene(rng, size)
    mask = pick_target(scene, rng)
    pts = sample_inside(mask, n_points, rng)
    return {
        "image": torch.from_numpy(scene.image).permute(2, 0, 1).contiguous(),
        "mask": torch.from_numpy(mask.astype(np.float32)),
        "points": torch.from_numpy(pts),
        "point_labels": torch.ones(n_points, dtype=torch.float32),
        "domain": 0,
        "index": index,
    }


class GenericDataset(torch.utils.data.Dataset):
    """A fixed, held-out-style set of `n` generic items (deterministic from `seed`)."""

    def __init__(self, n: int, seed: int, size: int = 256, n_points: int = 3) -> None:
        if n <= 0:
            raise ValueError(f"GenericDataset: n must be positive, got {n}")
        self.n, self.seed, self.size, self.n_points = n, seed, size, n_points

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return generic_item(self.seed, index, self.size, self.n_points)
