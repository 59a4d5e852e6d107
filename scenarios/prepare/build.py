"""From a dataset's :class:`Layout` to OUT: decode, check, binarise, write, points, manifest, move.

Everything is written into a temporary folder beside OUT (`.<OUT name>.prepare-<random>@<host>@<pid>`)
and renamed into place only when complete, so OUT is never half-written: an error or an interrupt
removes the temporary folder, and a folder left by a killed process is removed by the next run on
that OUT (``scenarios.fileio.clean_stale_temps``).
An existing OUT holding the same data (fingerprint and points) is kept; a different one is an error
unless `overwrite`.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from scenarios.checks import decode_mask
from scenarios.fileio import atomic_write_text, clean_stale_temps, make_temp_dir, sha256_file
from scenarios.points import points_for_mask
from scenarios.prepare.common import (DUPLICATE, EMPTY, NOT_LISTED, SIZE_MISMATCH, SPLIT_ORDER,
                                      UNREADABLE, Context, Drop, Layout, Options, Pair)


@dataclass
class Written:
    split: str
    stem: str
    grey: bool  # the mask had values other than 0 and 255
    resized: bool
    points: Optional[list]  # the points.json entry (None: the mask is empty at 1024 px)
    from_reference: bool


# ------------------------------------------------------------------------------ splits
def assign_splits(layout: Layout, lists: Optional[dict]) -> list:
    """Apply the split lists (when given) and drop stems seen in an earlier split; returns the listed
    stems that are nowhere in SOURCE (an error when none of them is there)."""
    missing: list = []
    if lists is not None:
        where = {stem: split for split, stems in lists.items() for stem in stems}
        kept = []
        for pair in layout.pairs:
            if pair.stem in where:
                pair.split = where[pair.stem]
                kept.append(pair)
            else:
                layout.drop(pair.image, NOT_LISTED)
        seen = {p.stem for p in layout.pairs} | {Path(d.file).stem for d in layout.dropped}
        missing = sorted(set(where) - seen)
        if missing and len(missing) == len(where):
            raise ValueError(f"none of the {len(where)} listed images is in the source "
                             f"(e.g. {missing[0]!r}); is SOURCE the right dataset?")
        layout.pairs = kept
    names = [*SPLIT_ORDER, *sorted(set(lists or {}) - set(SPLIT_ORDER))]
    first: dict = {}
    kept = []
    for pair in sorted(layout.pairs, key=lambda p: (names.index(p.split), str(p.image))):
        if pair.stem in first:
            layout.drop(pair.image, DUPLICATE, f"stem {pair.stem!r} also in {first[pair.stem]}")
        else:
            first[pair.stem] = pair.split
            kept.append(pair)
    layout.pairs = kept
    return missing


# ------------------------------------------------------------------------------ one pair
def _decode_image(path: Path) -> tuple:
    with Image.open(path) as im:
        im.load()
        return im.size


def _decode_mask(pair: Pair) -> np.ndarray:
    if pair.load_mask is not None:
        return np.asarray(pair.load_mask(), dtype=np.uint8)
    return np.asarray(decode_mask(pair.mask))  # 0/1, 16-bit, palette, alpha: scenarios/checks.py


def _foreground(pair: Pair, size: tuple, opts: Options) -> Union[tuple, Drop]:
    """(bool mask at the image size, grey, resized) or the Drop saying why not."""
    try:
        grey = _decode_mask(pair)
    except Exception as exc:  # any decode error (truncated, not an image...) drops the pair
        return Drop(pair.mask_label, UNREADABLE, f"{type(exc).__name__}: {exc}")
    has_grey = bool(np.any((grey != 0) & (grey != 255)))
    fg = grey >= opts.threshold if opts.mask_reading == "threshold" else grey == 255
    resized = (fg.shape[1], fg.shape[0]) != tuple(size)
    if resized and not opts.resize_masks:
        return Drop(str(pair.image), SIZE_MISMATCH, f"image {size[0]}x{size[1]}, mask "
                    f"{fg.shape[1]}x{fg.shape[0]} ({pair.mask_label}); --resize-masks resizes it")
    if resized:
        fg = np.asarray(Image.fromarray(fg).resize(tuple(size), Image.NEAREST))
    if not fg.any():
        return Drop(pair.mask_label, EMPTY, f"{opts.mask_reading} reading")
    return fg, has_grey, resized


def process(pair: Pair, tmp: Path, ctx: Context) -> Union[Written, Drop]:
    """Check one pair fully decoded, then copy the image and write the 0/255 PNG mask and its points."""
    opts = ctx.options
    try:
        size = _decode_image(pair.image)
    except Exception as exc:
        return Drop(str(pair.image), UNREADABLE, f"{type(exc).__name__}: {exc}")
    result = _foreground(pair, size, opts)
    if isinstance(result, Drop):
        return result
    fg, has_grey, resized = result
    split_dir = tmp / pair.split
    shutil.copyfile(pair.image, split_dir / "images" / pair.image.name)
    mask_path = split_dir / "masks" / f"{pair.stem}.png"
    Image.fromarray(fg.astype(np.uint8) * 255, "L").save(mask_path, format="PNG")
    reference = ctx.reference_points.get(pair.stem)
    if reference is not None:
        points = reference
    else:
        pts = points_for_mask(mask_path, opts.num_points, opts.seed)
        points = None if pts is None else [pts.tolist(), [1] * opts.num_points]
    return Written(pair.split, pair.stem, has_grey, resized, points, reference is not None)


def process_all(layout: Layout, tmp: Path, ctx: Context, desc: str) -> list:
    """`process` every pair (threads: decoding and PNG encoding release the GIL), in pair order."""
    from tqdm import tqdm

    for split in {p.split for p in layout.pairs}:
        (tmp / split / "images").mkdir(parents=True)
        (tmp / split / "masks").mkdir()
    pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
    try:
        results = pool.map(lambda p: process(p, tmp, ctx), layout.pairs)
        return list(tqdm(results, total=len(layout.pairs), desc=desc, unit="img",
                         disable=not ctx.options.progress, leave=False))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------ OUT
def folder_fingerprint(root: Path, splits) -> str:
    """sha256 of the sorted (split, image name, image size in bytes, mask sha256) of a prepared OUT."""
    rows = []
    for split in splits:
        for image in (root / split / "images").iterdir():
            mask = root / split / "masks" / f"{image.stem}.png"
            rows.append([split, image.name, image.stat().st_size, sha256_file(mask)])
    return hashlib.sha256(json.dumps(sorted(rows)).encode()).hexdigest()


def write_points(tmp: Path, written: list) -> dict:
    """masks/points.json per split (keys = mask file names, sorted); returns split -> its sha256."""
    out = {}
    for split in sorted({w.split for w in written}):
        entries = {f"{w.stem}.png": w.points for w in sorted(written, key=lambda w: w.stem)
                   if w.split == split and w.points is not None}
        atomic_write_text(tmp / split / "masks" / "points.json", json.dumps(entries))
        out[split] = sha256_file(tmp / split / "masks" / "points.json")
    return out


def _same_data(out: Path, manifest: dict) -> bool:
    with contextlib.suppress(OSError, ValueError, KeyError):
        old = json.loads((out / "manifest.json").read_text())
        return (old["fingerprint"] == manifest["fingerprint"]
                and old["points_sha256"] == manifest["points_sha256"]
                and folder_fingerprint(out, old["splits"]) == old["fingerprint"]
                and all(sha256_file(out / s / "masks" / "points.json") == h
                        for s, h in old["points_sha256"].items()))
    return False


def check_out(out: Path, overwrite: bool, source: Path) -> None:
    """Before any work: OUT must be absent, empty, a prepare output, or replaceable, and not hold SOURCE."""
    if out.resolve() == source.resolve() or out.resolve() in source.resolve().parents:
        raise ValueError(f"OUT {out} would hold SOURCE {source}; write the prepared folder elsewhere")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file() and not overwrite:
        raise ValueError(f"{out} exists and is not a prepare output (pass --overwrite to replace it)")
    clean_stale_temps(out.parent, (f".{glob.escape(out.name)}.prepare-*",))  # killed prepares'


def temp_folder(out: Path) -> Path:
    return make_temp_dir(out.parent, f".{out.name}.prepare-")


def place(tmp: Path, out: Path, manifest: dict, overwrite: bool) -> str:
    """Move the finished temporary folder to OUT; returns written | unchanged | replaced."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(tmp, out)
        return "written"
    if _same_data(out, manifest):
        shutil.rmtree(tmp)
        return "unchanged"
    if not overwrite:
        raise ValueError(f"{out} exists and holds different data (fingerprint differs from "
                         f"{manifest['fingerprint'][:12]}...); pass --overwrite to replace it")
    old = make_temp_dir(out.parent, f".{out.name}.prepare-old-")
    os.replace(out, old / "out")
    os.replace(tmp, out)
    shutil.rmtree(old)
    return "replaced"
