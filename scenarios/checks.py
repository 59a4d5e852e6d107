"""Checks of the files of a folder dataset: images, masks (per encoding) and point prompts.

Every failure is a :class:`DataError` (a ``ValueError``: the command line prints it as one line)
whose message starts with the file it is about. docs/datasets.md "What is checked" lists them.

Mask encodings (:func:`decode_mask` returns a grey 'L' image that the mask readings binarise):
- 8-bit grey or colour (L, RGB, 1-bit): grey levels as PIL's ``convert("L")`` gives them, unchanged;
  a lossless (non-JPEG) 8-bit mask whose values are only 0 and 1 reads 1 as the object.
- 16-bit (I;16, I): 0/1 and 0/65535 are binary masks; values up to 255 read as 8-bit grey levels;
  anything else (labels, a 16-bit grey scale) is refused.
- Palette (P): indices only 0 and 1 read index 1 as the object; otherwise a grey palette reads as
  its grey levels; colour palettes with more indices (label maps) are refused.
- With alpha (LA, RGBA, PA): the colour channels when they vary, the alpha channel when only it does.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

POINTS_SPACE = 1024  # the points of points.json live in the paper's 1024-pixel square space
_READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_JPEG = ("JPEG", "MPO")


class DataError(ValueError):
    """A data file is unreadable, inconsistent or in an encoding the loader refuses."""


def _reason(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def check_image(path: Path) -> tuple[int, int]:
    """The (width, height) of an image file, after checking it is complete.

    PNG: every chunk's CRC (``verify``: catches truncation and overwritten bytes). JPEG: the end
    marker must close the file (a truncated file lacks it); when it is missing the file is fully
    decoded, and a decode error is the error. Overwritten bytes inside a JPEG's compressed data
    decode without error and cannot be detected from the file alone.
    """
    try:
        with Image.open(path) as im:
            size, fmt = im.size, im.format
            if fmt == "PNG":
                im.verify()
            elif fmt in _JPEG and not _ends_with_eoi(path):
                im.load()
            elif fmt not in _JPEG:
                im.load()
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read image ({_reason(exc)})") from None
    return size


def _ends_with_eoi(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        fh.seek(max(0, fh.tell() - 2))
        return fh.read() == b"\xff\xd9"


def load_rgb(path: Path) -> Image.Image:
    """The image decoded as RGB; a decode error names the file."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read image ({_reason(exc)})") from None


def decode_mask(path: Path) -> Image.Image:
    """The mask as a grey 'L' image at its own size (encodings: the module docstring)."""
    try:
        with Image.open(path) as im:
            im.load()
            return _grey(im, path)
    except DataError:
        raise
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read mask ({_reason(exc)})") from None


def _grey(im: Image.Image, path: Path) -> Image.Image:
    mode = im.mode
    if mode == "P":
        return _palette(im, path)
    if mode in ("LA", "RGBA", "PA", "La", "RGBa"):
        colour, alpha = im.convert("RGBA").convert("L"), im.getchannel("A")
        lo, hi = colour.getextrema()
        return alpha if lo == hi and len(set(alpha.getextrema())) > 1 else colour
    if mode.startswith("I"):
        return _integer(np.asarray(im), path)
    if mode == "F":
        raise DataError(f"{path}: mask stored as floating point (mode F) is refused: write an "
                        "8-bit 0/255 mask")
    grey = im.convert("L")
    if mode == "L" and im.format not in _JPEG and grey.getextrema() == (0, 1):
        return grey.point(lambda v: 255 if v else 0)  # a lossless 0/1 mask: 1 is the object
    return grey


def _palette(im: Image.Image, path: Path) -> Image.Image:
    used = sorted(i for _, i in im.getcolors(256))
    if set(used) <= {0, 1}:
        return Image.fromarray(((np.asarray(im) == 1) * 255).astype(np.uint8), "L")
    palette = im.getpalette() or []
    colours = [tuple(palette[3 * i:3 * i + 3]) for i in used]
    if all(len(set(c)) == 1 for c in colours):
        return im.convert("L")
    raise DataError(f"{path}: palette mask with {len(used)} colour indices (a label map?) is refused: "
                    "only indices 0/1 (1 = object) or a grey palette are read")


def _integer(values: np.ndarray, path: Path) -> Image.Image:
    hi = int(values.max()) if values.size else 0
    if hi <= 1:
        grey = values * 255
    elif hi <= 255:
        grey = values
    elif hi == 65535 and np.all((values == 0) | (values == 65535)):
        grey = (values > 0) * 255
    else:
        raise DataError(f"{path}: 16-bit mask with values up to {hi} that are not 0/1 or 0/65535 (labels "
                        "or a grey scale?) is refused: write an 8-bit 0/255 mask")
    return Image.fromarray(grey.astype(np.uint8), "L")


def check_points(points, labels, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(points (K, 2), labels (K,)) as float arrays after checking them; ``where`` starts the error.

    Points must be finite and inside the [0, 1024) square of the points space; labels 0 or 1.
    """
    try:
        pts = np.asarray(points, dtype=np.float64)
        lab = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: points must be numbers [[x, y], ...] and labels numbers") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or lab.shape != (len(pts),):
        raise DataError(f"{where}: expected K points [x, y] and K labels, got shapes "
                        f"{list(pts.shape)} and {list(lab.shape)}")
    for i, (x, y) in enumerate(pts):
        if not (math.isfinite(x) and math.isfinite(y)):
            raise DataError(f"{where}: point {i} ({x}, {y}) is not finite")
        if not (0 <= x < POINTS_SPACE and 0 <= y < POINTS_SPACE):
            raise DataError(f"{where}: point {i} ({x:g}, {y:g}) is outside the image: points.json "
                            f"coordinates lie in [0, {POINTS_SPACE})")
    bad = [v for v in lab if v not in (0.0, 1.0)]
    if bad:
        raise DataError(f"{where}: point label {bad[0]} is not 0 or 1")
    return pts, lab
