"""The built-in synthetic stream: procedural domains that differ the way the paper's domains do.

Each generator maps (rng, size) to (uint8 RGB image (S, S, 3), bool mask (S, S)):
- polyp:      smooth dome-shaded blobs, close to the colour of the pinkish, vessel-veined tissue they
              grow on, under endoscope lighting
- camouflage: irregular objects filled with their background's own texture and palette (a finer or
              coarser scale and a slight colour shift are the only cues)
- shadow:     soft, bluish, darkened regions with a penumbra on bright ground, plus dark distractors
- lesion:     large irregular brown blobs with a darker core and fuzzy border on skin, with hairs
- cod:        (COD10K-like) an elongated animal in foliage wearing the background's own texture and
              scale; a hue shift and its darker rim are the only cues
- thin:       one thin curved stroke among many compact coloured shapes (clutter); not in the default
              stream (after fine-tuning the decoder it scored no better than zero-shot)
- natural:    (evaluation-only) shapes cut from one photo pasted on another; the photos are those that
              scikit-image bundles in its package (no download)

The stream is written in the paper's folder format (png images and masks, masks/points.json from
scenarios/points.py) into `<cache_dir>/<hash of the generator settings>/<domain>/{train,test}`,
atomically (built in `.<hash>.<random>@<host>@<pid>` and renamed when complete; a killed
generation's folder is removed the next time the cache is opened), and reused when present.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from PIL import Image

from scenarios import shapes as sh
from scenarios.fileio import clean_stale_temps, make_temp_dir
from scenarios.points import write_points_json

GENERATOR_VERSION = 3  # bump when a generator changes: it is part of the cache key
Generator = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _center(rng: np.random.Generator, size: int, radius: float, margin: float = 0.9) -> tuple[float, float]:
    lo, hi = min(radius * margin, size / 2), max(size - radius * margin, size / 2)
    return float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))


def polyp(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    tissue = sh.jitter_color(rng, (205, 115, 110), 25)
    dark = tuple(v * 0.6 for v in tissue)
    img = sh.colorize(sh.fractal_noise(rng, size, scale=3), dark, tissue)
    for _ in range(int(rng.integers(3, 8))):  # vessels
        vessel = sh.stroke_mask(rng, size, length=size * rng.uniform(0.3, 0.8), width=max(1, size / 200))
        img = sh.blend(img, (120, 30, 40), sh.soft_alpha(vessel, 0.7) * 0.5)
    radius = size * rng.uniform(0.1, 0.25)
    c = tuple(rng.uniform(0.3, 0.7, 2) * size)  # the endoscopist centres the polyp
    mask = sh.blob_mask(rng, size, c, radius, irregularity=0.15, harmonics=3, aspect=rng.uniform(0.8, 1.25))
    halo = np.roll(sh.soft_alpha(mask, radius / 4), (int(radius / 6),) * 2, axis=(0, 1))
    img *= (1 - 0.35 * halo)[..., None]  # a raised polyp shades the tissue below it
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dome = np.clip(1 - (np.hypot(xx - c[0], yy - c[1]) / radius) ** 2, 0, 1)
    # about the tissue's colour: the dome shading, the finer texture and the halo are the cues
    polyp_col = tuple(np.clip(np.multiply(tissue, rng.uniform(0.95, 1.1)) + (0, rng.uniform(0, 15), 0), 0, 255))
    body = sh.colorize(sh.fractal_noise(rng, size, scale=6), tuple(v * 0.8 for v in polyp_col), polyp_col)
    body *= (0.75 + 0.4 * dome)[..., None]
    img = sh.blend(img, body, sh.soft_alpha(mask, size / 256))
    for _ in range(int(rng.integers(2, 6))):  # specular highlights
        spot = sh.ellipse_mask(rng, size, tuple(rng.uniform(0, size, 2)), size * rng.uniform(0.006, 0.02))
        img = sh.blend(img, (250, 250, 250), sh.soft_alpha(spot, 1.0))
    img *= sh.vignette(size, tuple(rng.uniform(0.4, 0.6, 2) * size), rng.uniform(0.6, 1.2))[..., None]
    return sh.to_uint8(img), mask


def camouflage(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    earth = [(110, 90, 60), (70, 85, 45), (150, 130, 95), (90, 80, 75), (60, 50, 35), (130, 120, 80)]
    i, j = rng.choice(len(earth), 2, replace=False)
    c0, c1 = sh.jitter_color(rng, earth[i], 20), sh.jitter_color(rng, earth[j], 20)
    kind = sh.TEXTURES[rng.integers(len(sh.TEXTURES))]
    scale = size * rng.uniform(0.04, 0.08)
    img = sh.colorize(sh.texture(rng, size, kind, scale), c0, c1)
    radius = size * rng.uniform(0.12, 0.28)
    mask = sh.blob_mask(rng, size, _center(rng, size, radius), radius, irregularity=0.4, harmonics=6,
                        aspect=rng.uniform(0.6, 1.6))
    factor = rng.choice([0.5, 1.8])  # the object's texture is finer or coarser than the background's
    shift = rng.uniform(-18, 18, 3)
    obj = sh.colorize(sh.texture(rng, size, kind, scale * factor), np.add(c0, shift), np.add(c1, shift))
    img = sh.blend(img, obj, sh.soft_alpha(mask, size / 256))
    img += rng.normal(0, 4, img.shape)
    return sh.to_uint8(img), mask


def shadow(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    grounds = [(200, 185, 150), (170, 170, 165), (120, 160, 80), (215, 205, 190)]
    ground = sh.jitter_color(rng, grounds[rng.integers(len(grounds))], 15)
    img = sh.colorize(sh.fractal_noise(rng, size, scale=size / 16, octaves=3),
                      tuple(v * 0.8 for v in ground), ground)
    for _ in range(int(rng.integers(1, 4))):  # dark but hard-edged, saturated distractors
        d = sh.random_shape_mask(rng, size, radius=size * rng.uniform(0.04, 0.1))
        img = sh.blend(img, sh.random_color(rng, 0, 90), d.astype(np.float32))
    radius = size * rng.uniform(0.12, 0.3)
    c = _center(rng, size, radius)
    region = sh.blob_mask(rng, size, c, radius, irregularity=0.3, aspect=rng.uniform(1.2, 2.5))
    if rng.random() < 0.5:  # the shadow of a pole or a branch joins the blob
        region |= sh.stroke_mask(rng, size, size * 0.4, size * rng.uniform(0.03, 0.06), start=c, curvature=0.02)
    alpha = sh.soft_alpha(region, size * rng.uniform(0.008, 0.02))
    darkness = rng.uniform(0.5, 0.75)
    tint = np.array([0.9, 0.95, 1.1], np.float32)  # shadows are lit by the blue sky
    img = img * (1 - alpha[..., None] * (1 - darkness * tint))
    return sh.to_uint8(img), alpha > 0.5


def lesion(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    skin = sh.jitter_color(rng, (225, 180, 155), 20)
    img = sh.colorize(sh.fractal_noise(rng, size, scale=4), tuple(v * 0.9 for v in skin), skin)
    radius = size * rng.uniform(0.18, 0.35)
    c = _center(rng, size, radius, margin=0.6)
    mask = sh.blob_mask(rng, size, c, radius, irregularity=0.45, harmonics=8, aspect=rng.uniform(0.7, 1.4))
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    depth = depth / max(1.0, float(depth.max()))
    brown = sh.jitter_color(rng, (140, 90, 60), 25)
    core = tuple(v * rng.uniform(0.35, 0.6) for v in brown)
    body = sh.colorize(np.clip(depth * 1.5 + 0.3 * sh.fractal_noise(rng, size, scale=8), 0, 1), brown, core)
    img = sh.blend(img, body, sh.soft_alpha(mask, size * rng.uniform(0.006, 0.015)))
    for _ in range(int(rng.integers(0, 8))):  # hairs cross the lesion; the mask ignores them
        hair = sh.stroke_mask(rng, size, size * rng.uniform(0.3, 0.7), max(1, size / 256), curvature=0.03)
        img = sh.blend(img, (50, 35, 25), hair.astype(np.float32) * 0.8)
    img *= sh.vignette(size, (size / 2, size / 2), rng.uniform(0.2, 0.9))[..., None]
    return sh.to_uint8(img), mask


def cod(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """COD10K-like: an elongated animal wearing the background's own texture and scale; a hue shift and
    the darker rim of a rounded body (self-shadow) are the only cues. Leaf-like clutter in the palette."""
    foliage = [(70, 100, 45), (110, 95, 60), (95, 120, 70), (140, 125, 90), (60, 70, 50)]
    i, j = rng.choice(len(foliage), 2, replace=False)
    c0, c1 = sh.jitter_color(rng, foliage[i], 15), sh.jitter_color(rng, foliage[j], 15)
    scale = size * rng.uniform(0.03, 0.06)
    img = sh.colorize(sh.fractal_noise(rng, size, scale=size / scale / 4), c0, c1)
    for _ in range(int(rng.integers(6, 14))):  # leaves
        leaf = sh.ellipse_mask(rng, size, tuple(rng.uniform(0, size, 2)), size * rng.uniform(0.03, 0.08),
                               (1.5, 3.0))
        img = sh.blend(img, sh.jitter_color(rng, (c0, c1)[int(rng.integers(2))], 20), sh.soft_alpha(leaf, 1.0))
    radius = size * rng.uniform(0.09, 0.16)
    mask = sh.blob_mask(rng, size, _center(rng, size, radius), radius, irregularity=0.25, harmonics=4,
                        aspect=rng.uniform(3.0, 5.0))
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    rim = np.clip(depth / max(1.0, 0.6 * float(depth.max())), 0, 1)  # 0 at the outline, 1 along the spine
    shift = rng.uniform(-22, 22, 3)
    body = sh.colorize(sh.fractal_noise(rng, size, scale=size / scale / 4), np.add(c0, shift), np.add(c1, shift))
    body *= (0.7 + 0.3 * rim)[..., None]
    img = sh.blend(img, body, sh.soft_alpha(mask, size / 256))
    img += rng.normal(0, 4, img.shape)
    return sh.to_uint8(img), mask


def thin(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    img = sh.colorize(sh.fractal_noise(rng, size, scale=4), sh.random_color(rng, 60, 140),
                      sh.random_color(rng, 100, 200))
    for _ in range(int(rng.integers(12, 30))):  # compact clutter
        r = size * rng.uniform(0.02, 0.07)
        kind = rng.integers(3)
        c = tuple(rng.uniform(0, size, 2))
        m = (sh.blob_mask(rng, size, c, r) if kind == 0 else sh.polygon_mask(rng, size, c, r, 4 + kind)
             if kind == 1 else sh.ellipse_mask(rng, size, c, r, (1.0, 1.8)))
        img = sh.blend(img, sh.random_color(rng), m.astype(np.float32))
    mask = sh.stroke_mask(rng, size, length=size * rng.uniform(0.5, 1.0), width=size * rng.uniform(0.015, 0.035),
                          curvature=rng.uniform(0.02, 0.1))
    colour = sh.random_color(rng)
    img = sh.blend(img, colour, sh.soft_alpha(mask, 0.5) * 0.95)
    return sh.to_uint8(img), mask


@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """RGB photos bundled inside scikit-image (skimage/data/*.png|jpg; checked to load offline)."""
    from skimage import data
    rgb = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.stereo_motorcycle()[0]]
    grey = [data.camera(), data.coins(), data.brick(), data.grass(), data.gravel()]
    return tuple(rgb + [np.repeat(g[..., None], 3, axis=2) for g in grey])


def _photo_crop(rng: np.random.Generator, size: int, index: int) -> np.ndarray:
    p = _photos()[index]
    side = int(min(p.shape[:2]) * rng.uniform(0.5, 1.0))
    y, x = rng.integers(0, p.shape[0] - side + 1), rng.integers(0, p.shape[1] - side + 1)
    crop = Image.fromarray(p[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
    return np.asarray(crop, np.float32)


def natural(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    back, obj = rng.choice(len(_photos()), 2, replace=False)  # the object comes from another photo
    img = _photo_crop(rng, size, back)
    radius = size * rng.uniform(0.12, 0.3)
    c = _center(rng, size, radius)
    mask = sh.random_shape_mask(rng, size, radius=radius, center=c)
    offset = np.roll(sh.soft_alpha(mask, size / 64), (int(size / 50),) * 2, axis=(0, 1))  # drop shadow
    img = img * (1 - 0.4 * offset[..., None])
    img = sh.blend(img, _photo_crop(rng, size, obj), sh.soft_alpha(mask, 0.7))
    return sh.to_uint8(img), mask


DOMAINS: dict[str, Generator] = {
    "polyp": polyp, "camouflage": camouflage, "shadow": shadow, "lesion": lesion, "thin": thin, "cod": cod,
    "natural": natural,
}


def generate_sample(domain: str, seed: int, split: str, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (image, mask), a pure function of its arguments (independent of the other samples)."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown synthetic domain {domain!r} (known: {', '.join(DOMAINS)})")
    rng = np.random.default_rng([seed, zlib.crc32(domain.encode()), zlib.crc32(split.encode()), index])
    for _ in range(20):  # redraw the rare sample whose object is (almost) empty
        img, mask = DOMAINS[domain](rng, size)
        if mask.sum() >= max(4, size * size // 1000):
            return img, mask
    raise RuntimeError(f"synthetic domain {domain!r} keeps producing empty masks at size {size}")


def synthetic_settings(cfg: Any) -> dict:  # cfg: scenarios.config.StreamConfig (which imports this module)
    """Everything that determines the generated files (hashed into the cache folder name)."""
    s = cfg.synthetic
    return {
        "version": GENERATOR_VERSION, "seed": s.seed, "image_size": s.image_size or cfg.image_size,
        "train_per_domain": s.train_per_domain, "test_per_domain": s.test_per_domain,
        "domains": [d.name for d in cfg.domains], "eval_only": [d.name for d in cfg.eval_only],
        "num_points": cfg.prompts.num_points, "points_seed": cfg.prompts.seed,
    }


def generate_synthetic_stream(cfg: Any, progress: bool = True) -> Path:  # cfg: a StreamConfig
    """Write (or reuse) the synthetic stream of `cfg`; returns the folder holding one folder per domain."""
    if cfg.synthetic is None:
        raise ValueError(f"stream {cfg.name!r} has no synthetic section")
    settings = synthetic_settings(cfg)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(cfg.synthetic.cache_dir)
    root = cache / key
    clean_stale_temps(cache, (".*@*@*",))  # streams whose generation was killed
    if (root / "settings.json").exists():
        return root
    from tqdm import tqdm

    tmp = make_temp_dir(cache, f".{key}.")
    try:
        # Evaluation-only domains get a train split too: never trained on, but methods may keep
        # samples of it (SAMCL's selector buffer).
        jobs = [(d, "train", settings["train_per_domain"]) for d in settings["domains"] + settings["eval_only"]]
        jobs += [(d, "test", settings["test_per_domain"]) for d in settings["domains"] + settings["eval_only"]]
        size = settings["image_size"]
        with tqdm(total=sum(n for *_, n in jobs), desc="synthetic stream", unit="img",
                  disable=not progress) as bar:
            for domain, split, n in jobs:
                split_dir = tmp / domain / split
                (split_dir / "images").mkdir(parents=True)
                (split_dir / "masks").mkdir()
                for i in range(n):
                    img, mask = generate_sample(domain, settings["seed"], split, i, size)
                    name = f"{domain}_{split}_{i:04d}.png"
                    Image.fromarray(img).save(split_dir / "images" / name, compress_level=1)
                    Image.fromarray(mask.astype(np.uint8) * 255).save(split_dir / "masks" / name, compress_level=1)
                    bar.update()
                write_points_json(split_dir, settings["num_points"], settings["points_seed"])
        (tmp / "settings.json").write_text(json.dumps(settings, indent=1))
        try:
            os.rename(tmp, root)
        except OSError:  # another process finished first (or a stale half folder): keep a complete one
            if not (root / "settings.json").exists():
                shutil.rmtree(root, ignore_errors=True)
                os.rename(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
