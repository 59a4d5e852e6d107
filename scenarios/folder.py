"""The paper's folder format: `<root>/<split>/{images,masks}/`, one mask per image with the same stem.

Decisions (tested in tests/test_scenarios.py):
- Images and masks may be png, jpg or jpeg, in any combination (matched by file stem).
- Files in images/ that are not png/jpg/jpeg (and hidden files) are skipped, with one warning.
- An image without a mask is an error naming the image: a missing label usually means a broken
  download, and silently evaluating on fewer images would change the scores. A mask without an
  image is an error naming the mask, for the same reason.
- Every image and mask is checked when the dataset is built (scenarios/checks.py: truncated or
  corrupt files, refused mask encodings, a mask of another size than its image unless
  ``mask_size_mismatch="resize"``, points.json points outside [0, 1024) or not finite), and a
  split with no usable image is an error: all before any training, one line naming the file.
- Images whose mask is empty after the resize to S are skipped, with one warning listing them
  (IoU and Dice are undefined on them, and no foreground point prompt exists).
- Missing `masks/points.json`, or a missing entry in it: points are sampled on the fly with the
  same function as `python run_benchmark.py points <folder>` (so they equal what it would write),
  with a warning.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from scenarios.checks import DataError, check_image, check_points, decode_mask, load_rgb
from scenarios.points import IMAGE_EXTS, POINTS_SPACE, binarise, points_for_mask, read_mask

log = logging.getLogger(__name__)

#: what a mask whose size differs from its image's does: ``error``, or ``resize`` (NEAREST onto the
#: image's square grid, as the image itself is resized)
MASK_SIZE_MISMATCH = ("error", "resize")


class FolderSegmentationDataset(Dataset):
    """One split of one domain; items are the dicts of docs/design.md section 1."""

    def __init__(self, root: Path | str, split: str, *, image_size: int, domain_index: int,
                 mask_reading: str = "threshold", mask_threshold: int = 128, num_points: int = 3,
                 points_seed: int = 1234, domain_name: str | None = None,
                 mask_size_mismatch: str = "error") -> None:
        if mask_size_mismatch not in MASK_SIZE_MISMATCH:
            raise ValueError(f"mask_size_mismatch must be one of {MASK_SIZE_MISMATCH}, got {mask_size_mismatch!r}")
        self.root = Path(root)
        self.split = split
        self.image_size = int(image_size)
        self.domain_index = int(domain_index)
        self.domain_name = domain_name or self.root.name
        self.mask_reading = mask_reading
        self.mask_threshold = mask_threshold
        self.num_points = num_points
        self.mask_size_mismatch = mask_size_mismatch
        self.split_dir = self.root / split
        image_dir, mask_dir = self.split_dir / "images", self.split_dir / "masks"
        for folder in (self.split_dir, image_dir, mask_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"dataset folder not found: {folder}")

        pairs = _match_masks(image_dir, mask_dir)
        stored = _read_points_json(mask_dir / "points.json")
        self.points_file = mask_dir / "points.json" if stored is not None else None
        #: the fingerprint of ``<root>/manifest.json`` when ``prepare`` wrote the folder, else None
        self.manifest_fingerprint = read_manifest_fingerprint(self.root)
        if stored is None:
            log.warning("%s: no points.json; sampling points on the fly (run `python run_benchmark.py "
                        "points %s` to write them)", mask_dir, self.split_dir)
            stored = {}

        self._images: list[Path] = []
        self._masks: list[Path] = []
        self._points: list[np.ndarray] = []  # (K, 2) in 1024 space
        self._labels: list[np.ndarray] = []
        empty, sampled = [], []
        for image, mask in pairs:
            if not self._checked_mask(image, mask).any():
                empty.append(image.name)
                continue
            entry = stored.get(mask.name) or stored.get(image.name)  # keyed by mask name; image name tolerated
            if entry is not None:
                pts, labels = check_points(*entry, f"{mask_dir / 'points.json'}: {mask.name} (image {image})")
            else:
                pts = points_for_mask(mask, num_points, points_seed, mask_reading, mask_threshold)
                if pts is None:  # empty at 1024 although not at S: treat as empty
                    empty.append(image.name)
                    continue
                labels = np.ones(num_points)
                sampled.append(mask.name)
            if len(pts) != num_points:
                raise ValueError(f"{mask_dir / 'points.json'}: {mask.name} has {len(pts)} points, "
                                 f"num_points is {num_points} (rewrite it with the points command)")
            self._images.append(image)
            self._masks.append(mask)
            self._points.append(np.asarray(pts, dtype=np.float64))
            self._labels.append(np.asarray(labels, dtype=np.float64))
        if not self._images:
            raise DataError(f"{self.split_dir}: no usable image ({len(pairs)} image(s), {len(empty)} "
                            f"with a mask empty at {self.image_size} px): nothing to train on or evaluate")
        if empty:
            log.warning("%s: skipping %d image(s) whose mask is empty at %d px: %s", self.split_dir,
                        len(empty), self.image_size, ", ".join(empty))
        if sampled and self.points_file is not None:
            log.warning("%s: %d mask(s) have no entry in points.json, sampled on the fly (rerun "
                        "`python run_benchmark.py points %s --overwrite`): %s", mask_dir, len(sampled),
                        self.split_dir, ", ".join(sampled[:10]) + (" ..." if len(sampled) > 10 else ""))

    def _checked_mask(self, image: Path, mask: Path):
        """The mask of ``image`` binarised at S, after checking both files and their sizes."""
        size = check_image(image)
        grey = decode_mask(mask)
        if grey.size != size and self.mask_size_mismatch == "error":
            raise DataError(f"{mask}: mask is {grey.size[0]}x{grey.size[1]}, its image {image.name} is "
                            f"{size[0]}x{size[1]} (stream option mask_size_mismatch: resize stretches it)")
        return binarise(grey, self.image_size, self.mask_reading, self.mask_threshold)

    def __len__(self) -> int:
        return len(self._images)

    @property
    def names(self) -> list[str]:
        """Image file names, in item order."""
        return [p.name for p in self._images]

    def files(self) -> list[Path]:
        """Every file an item depends on (images, masks, points.json): for cache keys."""
        extra = [self.points_file] if self.points_file is not None else []
        return [*self._images, *self._masks, *extra]

    def load_image(self, i: int) -> torch.Tensor:
        """uint8 (3, S, S): PIL RGB, torchvision Resize((S, S)) (bilinear, antialiased)."""
        rgb = load_rgb(self._images[i])
        size = [self.image_size, self.image_size]
        return TF.pil_to_tensor(TF.resize(rgb, size, InterpolationMode.BILINEAR, antialias=True))

    def load_target(self, i: int) -> dict:
        """Everything but the image (no image decoding): mask, points, point_labels, domain, index."""
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        mask = read_mask(self._masks[i], self.image_size, self.mask_reading, self.mask_threshold)
        scale = self.image_size / POINTS_SPACE
        return {
            "mask": torch.from_numpy(mask.astype(np.float32)),
            "points": torch.from_numpy((self._points[i] * scale).astype(np.float32)),
            "point_labels": torch.from_numpy(self._labels[i].astype(np.float32)),
            "domain": self.domain_index,
            "index": i,
        }

    def __getitem__(self, i: int) -> dict:
        target = self.load_target(i)
        return {"image": self.load_image(i), **target}

    def __repr__(self) -> str:
        return (f"FolderSegmentationDataset({self.domain_name!r}, {str(self.split_dir)!r}, "
                f"{len(self)} items, S={self.image_size})")


def _match_masks(image_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    masks: dict[str, Path] = {}
    for p in sorted(mask_dir.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."):
            if p.stem in masks:
                raise ValueError(f"{mask_dir}: two masks for stem {p.stem!r}: {masks[p.stem].name}, {p.name}")
            masks[p.stem] = p
    pairs, skipped = [], []
    for p in sorted(image_dir.iterdir()):
        if not p.is_file():
            continue
        if p.suffix.lower() not in IMAGE_EXTS or p.name.startswith("."):
            skipped.append(p.name)
            continue
        if p.stem not in masks:
            raise FileNotFoundError(f"{p}: no mask with the same stem in {mask_dir}")
        pairs.append((p, masks[p.stem]))
    orphans = sorted(set(masks.values()) - {m for _, m in pairs})
    if orphans:
        raise DataError(f"{orphans[0]}: mask without an image (no image with stem {orphans[0].stem!r} in "
                        f"{image_dir})" + (f"; {len(orphans) - 1} more" if len(orphans) > 1 else ""))
    if skipped:
        log.warning("%s: skipping %d non-image file(s): %s", image_dir, len(skipped), ", ".join(skipped))
    return pairs


def read_manifest_fingerprint(root: Path) -> str | None:
    """The ``fingerprint`` of ``root/manifest.json`` (written by ``run_benchmark.py prepare``), or
    None when the folder has no manifest."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        return None
    try:
        fingerprint = json.loads(path.read_text()).get("fingerprint")
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"{path}: not a prepare manifest (expected a JSON object with a fingerprint)") from None
    return str(fingerprint) if fingerprint else None


def split_files(split_dir: Path) -> list[Path] | None:
    """The files that identify one split's data: every non-hidden file in ``images/`` and
    ``masks/`` (``masks/points.json`` included), sorted; ``None`` for a missing split."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        return None
    return [p for sub in ("images", "masks") if (split_dir / sub).is_dir()
            for p in sorted((split_dir / sub).iterdir()) if p.is_file() and not p.name.startswith(".")]


def _read_points_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(x, list) for x in v)
            and len(v[0]) == len(v[1]) for v in data.values()):
        raise ValueError(f"{path}: expected {{\"<mask file name>\": [[[x, y], ...], [1, ...]]}}")
    return data
