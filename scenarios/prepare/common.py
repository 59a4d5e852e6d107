"""What every dataset module shares: the layout record, finding the official folders, pairing by stem.

A dataset module only knows its layout: it returns a :class:`Layout` (image/mask pairs with their
official split, plus the files it drops and why). Decoding, binarising, size checks, points, the
manifest and the atomic move into place live in :mod:`scenarios.prepare.build`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

IMAGE_EXTS = (".png", ".jpg", ".jpeg")  # what the folder loader reads
SPLIT_ORDER = ("train", "val", "test")
COCO_RULES = ("largest", "first", "smallest", "points")

# drop reasons (the manifest counts drops per reason; details name the file's problem)
NOT_AN_IMAGE = "not an image file"
SUPERPIXELS = "ISIC superpixels file (not an image of the task)"
NONCAM = "COD10K NonCAM image (not camouflaged)"
NO_MASK = "no mask with the same stem"
MASK_ONLY = "mask without an image"
DUPLICATE = "duplicate stem"
NOT_LISTED = "not in the split lists"
UNREADABLE = "unreadable file"
SIZE_MISMATCH = "image/mask size mismatch"
EMPTY = "empty mask after binarisation"
NO_ANNOTATION = "no non-crowd COCO annotation"


@dataclass
class Pair:
    """One image and its mask: a mask file, or (COCO) a function returning a uint8 0/255 array."""
    split: Optional[str]
    stem: str
    image: Path
    mask: Optional[Path] = None
    load_mask: Optional[Callable[[], np.ndarray]] = None

    @property
    def mask_label(self) -> str:
        return str(self.mask) if self.mask is not None else f"{self.image.name} (annotation)"


@dataclass
class Drop:
    file: str
    reason: str
    detail: str = ""

    def as_dict(self) -> dict:
        return {"file": self.file, "reason": self.reason, **({"detail": self.detail} if self.detail else {})}


@dataclass
class Layout:
    splits: tuple  # the official splits in order (empty when only a split list can assign them)
    pairs: list = field(default_factory=list)
    dropped: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # dataset-specific manifest entries

    def drop(self, file, reason: str, detail: str = "") -> None:
        self.dropped.append(Drop(str(file), reason, detail))


@dataclass(frozen=True)
class Options:
    """The settings of one prepare run (the CLI's options; recorded in the manifest)."""
    split_from: Optional[str] = None
    points_from: Optional[str] = None
    mask_reading: str = "threshold"  # threshold: v >= threshold; reference: only 255 (floor(v / 255))
    threshold: int = 128
    coco_instance: Optional[str] = None  # largest | first | smallest | points (None: points if points_from)
    resize_masks: bool = False
    overwrite: bool = False
    progress: bool = True
    num_points: int = 3
    seed: int = 1234

    def check(self) -> None:
        if self.mask_reading not in ("threshold", "reference"):
            raise ValueError(f"mask reading must be threshold or reference, got {self.mask_reading!r}")
        if not 1 <= self.threshold <= 255:
            raise ValueError(f"threshold must be in 1..255, got {self.threshold}")
        if self.coco_instance not in (None, *COCO_RULES):
            raise ValueError(f"coco instance rule must be one of {', '.join(COCO_RULES)}, got {self.coco_instance!r}")
        if self.coco_instance == "points" and not self.points_from:
            raise ValueError("--coco-instance points needs the reference points (--points-from)")
        if self.num_points < 1:
            raise ValueError(f"num points must be at least 1, got {self.num_points}")

    def recorded(self) -> dict:
        """The options that shape OUT (what the manifest records)."""
        return {"split_from": self.split_from, "points_from": self.points_from,
                "mask_reading": self.mask_reading, "threshold": self.threshold,
                "coco_instance": self.coco_instance, "resize_masks": self.resize_masks,
                "num_points": self.num_points, "seed": self.seed}


@dataclass
class Context:
    """What a dataset module may need besides SOURCE: the options and the reference's points."""
    dataset: str
    options: Options
    reference_points: dict = field(default_factory=dict)  # stem -> [[[x, y]...], [1...]] (1024 space)
    split_lists: Optional[dict] = None  # split -> set of stems


def stem_of(name: str) -> str:
    """A list entry's stem: the name without an image extension (other dots are kept)."""
    path = Path(name)
    return path.stem if path.suffix.lower() in IMAGE_EXTS else path.name


def find_root(source: Path, required: Sequence[str], candidates: Iterable[str], dataset: str,
              expected: str) -> Path:
    """The first of SOURCE / candidate subfolders holding every `required` folder; else a one-line
    error naming the first missing folder and the expected layout."""
    if not source.is_dir():
        raise FileNotFoundError(f"{dataset}: source folder not found: {source}")
    for rel in ("", *candidates):
        root = source / rel if rel else source
        if all((root / r).is_dir() for r in required):
            return root
    missing = next(r for r in required if not (source / r).is_dir())
    raise ValueError(f"{dataset}: no {missing} folder under {source} (expected {expected})")


def unwrap(folder: Path) -> Path:
    """`X/X/` (a zip extracted into a folder of its own name) -> the inner folder."""
    inner = folder / folder.name
    return inner if inner.is_dir() else folder


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _index_masks(mask_dirs: Sequence[Path], layout: Layout, skip) -> dict[str, list[Path]]:
    masks: dict[str, list[Path]] = {}
    for folder in mask_dirs:
        for p in _files(folder):
            if p.suffix.lower() not in IMAGE_EXTS:
                layout.drop(p, NOT_AN_IMAGE)
            elif skip(p.name) is None:
                masks.setdefault(p.stem, []).append(p)
    return masks


def pair_by_stem(layout: Layout, images: Sequence[tuple], mask_dirs: Sequence[Path],
                 mask_stems: Callable[[str], Sequence[str]] = lambda s: (s,),
                 skip: Callable[[str], Optional[str]] = lambda name: None) -> None:
    """Pair each image in `images` [(split, folder), ...] with the mask in `mask_dirs` whose stem is
    one of `mask_stems(image stem)`. `skip(file name)` -> a drop reason or None. Non-image files,
    images without a mask, ambiguous stems and masks without an image are dropped, named."""
    masks = _index_masks(mask_dirs, layout, skip)
    used: set[Path] = set()
    for split, folder in images:
        files = [p for p in _files(folder) if _keep_image(p, layout, skip)]
        stems = [p.stem for p in files]
        for p in files:
            found = [m for s in mask_stems(p.stem) for m in masks.get(s, ())]
            used.update(found)
            if stems.count(p.stem) > 1:
                layout.drop(p, DUPLICATE, f"{stems.count(p.stem)} images with stem {p.stem!r} in {folder}")
            elif not found:
                layout.drop(p, NO_MASK, f"none of {', '.join(mask_stems(p.stem))} in {', '.join(map(str, mask_dirs))}")
            elif len(found) > 1:
                layout.drop(p, DUPLICATE, f"{len(found)} masks: {', '.join(m.name for m in found)}")
            else:
                layout.pairs.append(Pair(split, p.stem, p, found[0]))
    for mask in sorted({m for group in masks.values() for m in group} - used):
        layout.drop(mask, MASK_ONLY)


def _keep_image(path: Path, layout: Layout, skip) -> bool:
    reason = skip(path.name)
    if reason is None and path.suffix.lower() not in IMAGE_EXTS:
        reason = NOT_AN_IMAGE
    if reason is not None:
        layout.drop(path, reason)
    return reason is None
