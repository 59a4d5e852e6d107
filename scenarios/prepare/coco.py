"""COCO 2017: `val2017/000000xxxxxx.jpg` and `annotations/instances_val2017.json` (as unpacked from
val2017.zip and annotations_trainval2017.zip, side by side under SOURCE, or SOURCE = val2017/ with
annotations/ beside it). The reference's 100 / 100 images both come from val2017: its name lists ship
in splits/coco.json. One instance per image becomes the mask (pycocotools `annToMask`), by rule:

- `largest` / `smallest`: by the annotation's area (ties: lower annotation id); `first`: the first
  annotation of the image in the file;
- `points` (default with --points-from): the non-crowd instance holding the most of the reference's
  points for that image (ties: the smallest); images without reference points fall back to `largest`.

Crowd annotations are never chosen; an image without a non-crowd annotation is dropped.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Optional

import numpy as np

from scenarios.points import POINTS_SPACE
from scenarios.prepare.common import IMAGE_EXTS, NO_ANNOTATION, NOT_AN_IMAGE, Context, Layout, Pair

EXPECTED = ("val2017/ and annotations/instances_val2017.json, as unpacked from val2017.zip and "
            "annotations_trainval2017.zip")
ANNOTATIONS = "instances_val2017.json"
NEEDS_SPLIT_LIST = True


def _find(source: Path) -> tuple:
    if not source.is_dir():
        raise FileNotFoundError(f"coco: source folder not found: {source}")
    images = [source / "val2017" / "val2017", source / "val2017"] + ([source] if source.name == "val2017" else [])
    folder = next((p for p in images if p.is_dir() and any(p.glob("*.jpg"))), None)
    if folder is None:
        raise ValueError(f"coco: no val2017 folder with .jpg images under {source} (expected {EXPECTED})")
    candidates = [source / "annotations" / ANNOTATIONS,
                  source / "annotations_trainval2017" / "annotations" / ANNOTATIONS,
                  source / ANNOTATIONS, source.parent / "annotations" / ANNOTATIONS]
    annotations = next((p for p in candidates if p.is_file()), None)
    if annotations is None:
        raise ValueError(f"coco: no annotations/{ANNOTATIONS} under {source} (expected {EXPECTED})")
    return folder, annotations


def _load(path: Path):
    import warnings

    from pycocotools.coco import COCO

    # pycocotools 2.0.x under numpy 2 warns on every decode (harmless: its __array__ lacks `copy`)
    warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword",
                            category=DeprecationWarning, module="pycocotools")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"coco: {path} is not a COCO instances file ({type(exc).__name__}: {exc})") from None


def _hits(coco, ann: dict, info: dict, points: list) -> int:
    """How many reference points (1024 space) fall inside the instance (NEAREST mapping to the image)."""
    mask = coco.annToMask(ann)
    w, h = info["width"], info["height"]
    return sum(bool(mask[min(int((y + 0.5) * h / POINTS_SPACE), h - 1),
                         min(int((x + 0.5) * w / POINTS_SPACE), w - 1)]) for x, y in points)


def choose(coco, anns: list, info: dict, rule: str, points: Optional[list]) -> tuple:
    """(the chosen annotation, how it was chosen) among the image's non-crowd annotations."""
    by_area = sorted(anns, key=lambda a: (a["area"], a["id"]))
    if rule == "points" and points is not None:
        hits = {a["id"]: _hits(coco, a, info, points) for a in anns}
        best = max(hits.values())
        chosen = next(a for a in by_area if hits[a["id"]] == best)
        return chosen, "points" if best else "points (no point inside any instance: smallest)"
    largest = max(anns, key=lambda a: (a["area"], -a["id"]))
    if rule == "points":
        return largest, "largest (no reference points)"
    if rule == "first":
        return anns[0], "first"
    return (by_area[0], "smallest") if rule == "smallest" else (largest, "largest")


def _mask_loader(coco, ann: dict):
    return lambda: coco.annToMask(ann) * np.uint8(255)


def collect(source: Path, ctx: Context) -> Layout:
    folder, path = _find(source)
    coco = _load(path)
    rule = ctx.options.coco_instance or ("points" if ctx.options.points_from else "largest")
    by_name = {info["file_name"]: info for info in coco.dataset.get("images", [])}
    listed = set().union(*ctx.split_lists.values()) if ctx.split_lists else None
    layout = Layout(splits=(), extra={"coco_instance_rule": rule, "coco_instance_counts": {},
                                      "coco_instances": {}})
    counts, chosen_ids = layout.extra["coco_instance_counts"], layout.extra["coco_instances"]
    for image in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        info = by_name.get(image.name)
        if image.suffix.lower() not in IMAGE_EXTS or info is None:
            layout.drop(image, NOT_AN_IMAGE if image.suffix.lower() not in IMAGE_EXTS else f"not in {path.name}")
            continue
        if listed is not None and image.stem not in listed:
            layout.pairs.append(Pair(None, image.stem, image))  # dropped as not listed
            continue
        anns = [a for a in coco.imgToAnns.get(info["id"], []) if not a.get("iscrowd")]
        if not anns:
            layout.drop(image, NO_ANNOTATION)
            continue
        ann, how = choose(coco, anns, info, rule, ctx.reference_points.get(image.stem, [None])[0])
        counts[how] = counts.get(how, 0) + 1
        chosen_ids[image.stem] = ann["id"]
        layout.pairs.append(Pair(None, image.stem, image, load_mask=_mask_loader(coco, ann)))
    layout.extra["coco_instance_counts"] = dict(sorted(counts.items()))
    return layout
