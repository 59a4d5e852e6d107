"""Small builders shared by tests: tiny folder-format domains written into a temp dir."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_tiny_domain(root: Path, split: str = "test", n: int = 4, size: int = 64, seed: int = 0,
                      mask_ext: str = "png") -> Path:
    """``n`` random images with a bright square object each, masks and points.json; returns root."""
    from scenarios.points import write_points_json

    rng = np.random.default_rng(seed)
    img_dir, mask_dir = root / split / "images", root / split / "masks"
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        x0, y0 = rng.integers(4, size // 2, 2)
        w = int(rng.integers(size // 6, size // 3))
        mask[y0:y0 + w, x0:x0 + w] = 255
        image[mask > 0] = rng.integers(150, 255, 3)
        Image.fromarray(image).save(img_dir / f"img{i:02d}.png")
        Image.fromarray(mask).save(mask_dir / f"img{i:02d}.{mask_ext}")
    write_points_json(root / split, num_points=3, seed=seed)
    return root
