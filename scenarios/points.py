"""Point prompts: sampling and the `masks/points.json` file of the paper's folder format.

Points live in the paper's 1024-pixel square space: the mask is NEAREST-resized to 1024x1024 (aspect
ratio not kept), binarised, and k foreground pixels are drawn uniformly (with replacement only when the
mask has fewer than k pixels). A point is (x = column, y = row) of the drawn pixel.

Each file gets its own generator seeded from (seed, mask file name), so the points of a file do not
depend on which other files are in the folder or on their listing order; the loader uses the same
function when points.json (or one of its entries) is missing, and so gets the same points.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from scenarios.checks import POINTS_SPACE, decode_mask
from scenarios.fileio import atomic_write_text

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
MASK_READINGS = ("threshold", "reference")


def read_mask(path: Path | str, size: int, mask_reading: str = "threshold", threshold: int = 128) -> np.ndarray:
    """Read a mask file as a bool (size, size) array: grey levels, NEAREST resize, then binarise.

    Grey levels: :func:`scenarios.checks.decode_mask` (0/1, 16-bit, palette and alpha encodings; an
    unreadable file or a refused encoding is a one-line error naming the file).
    `threshold`: foreground is value >= threshold (right for JPEG masks with compression noise);
    `reference`: floor(value / 255), i.e. only 255 is foreground (the SAMCL reference code's reading).
    """
    return binarise(decode_mask(Path(path)), size, mask_reading, threshold)


def binarise(grey: Image.Image, size: int, mask_reading: str = "threshold", threshold: int = 128) -> np.ndarray:
    """A decoded grey mask NEAREST-resized to (size, size), then binarised by ``mask_reading``."""
    if mask_reading not in MASK_READINGS:
        raise ValueError(f"mask_reading must be one of {MASK_READINGS}, got {mask_reading!r}")
    values = np.asarray(grey.resize((size, size), Image.NEAREST))
    return values >= threshold if mask_reading == "threshold" else values == 255


def file_seed(seed: int, file_name: str) -> int:
    """A per-file seed that depends only on the global seed and the file name."""
    digest = hashlib.sha256(f"{seed}:{file_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def sample_points(mask_1024: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k foreground points drawn uniformly from a bool mask; returns (k, 2) float [x=col, y=row]."""
    rows, cols = np.nonzero(mask_1024)
    if rows.size == 0:
        raise ValueError("cannot sample foreground points from an empty mask")
    pick = rng.choice(rows.size, size=k, replace=rows.size < k)
    return np.stack([cols[pick], rows[pick]], axis=1).astype(np.float64)


def points_for_mask(mask_path: Path, num_points: int, seed: int, mask_reading: str = "threshold",
                    threshold: int = 128) -> np.ndarray | None:
    """The points of one mask file in 1024 space, or None if the mask is empty at 1024."""
    mask = read_mask(mask_path, POINTS_SPACE, mask_reading, threshold)
    if not mask.any():
        return None
    return sample_points(mask, num_points, np.random.default_rng(file_seed(seed, mask_path.name)))


def list_masks(mask_dir: Path) -> list[Path]:
    return sorted(p for p in mask_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def write_points_json(split_dir: Path | str, num_points: int = 3, seed: int = 1234,
                      mask_reading: str = "threshold", mask_threshold: int = 128,
                      overwrite: bool = False) -> Path:
    """Write `<split_dir>/masks/points.json` for every mask in the folder (atomically).

    Empty masks get no entry (the loader skips their images), with one warning listing them.
    An existing points.json is kept unless `overwrite`.
    """
    mask_dir = Path(split_dir) / "masks"
    if not mask_dir.is_dir():
        raise FileNotFoundError(f"no masks folder: {mask_dir}")
    out = mask_dir / "points.json"
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists (pass overwrite=True / --overwrite to replace it)")
    entries, empty = {}, []
    for path in list_masks(mask_dir):
        pts = points_for_mask(path, num_points, seed, mask_reading, mask_threshold)
        if pts is None:
            empty.append(path.name)
            continue
        entries[path.name] = [pts.tolist(), [1] * num_points]
    if empty:
        log.warning("%s: %d empty mask(s) get no points: %s", mask_dir, len(empty), ", ".join(empty))
    atomic_write_text(out, json.dumps(entries))
    return out


def write_points_tree(folder: Path | str, **kwargs) -> list[Path]:
    """`write_points_json` for `folder` if it holds masks/, else for every split folder below it
    (e.g. `data/` or `data/Kvasir`). kwargs as for write_points_json."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    splits = [folder] if (folder / "masks").is_dir() else sorted(
        p.parent for p in folder.rglob("masks") if p.is_dir() and (p.parent / "images").is_dir())
    if not splits:
        raise FileNotFoundError(f"no <split>/masks folder found under {folder}")
    return [write_points_json(s, **kwargs) for s in splits]

