"""COD10K v3: `COD10K-v3/{Train,Test}/{Image, GT_Object, GT_Edge, GT_Instance, ...}`: images
`COD10K-{CAM|NonCAM}-<SuperNo>-<Super>-<SubNo>-<Sub>-<ImageNo>.jpg`, GT_Object masks `.png` with the
same stem. Only the camouflaged images (`-CAM-`) are kept (3040 / 2026): NonCAM masks are empty."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from scenarios.prepare.common import NONCAM, Context, Layout, find_root, pair_by_stem

EXPECTED = "the COD10K-v3 layout: Train/Image, Train/GT_Object, Test/Image, Test/GT_Object"


def _skip(name: str) -> Optional[str]:
    if "-CAM-" in name:
        return None
    return NONCAM if "-NonCAM-" in name else "not a COD10K-CAM image name"


def collect(source: Path, ctx: Context) -> Layout:
    required = ("Train/Image", "Train/GT_Object", "Test/Image", "Test/GT_Object")
    root = find_root(source, required, ("COD10K-v3",), ctx.dataset, EXPECTED)
    layout = Layout(splits=("train", "test"))
    for split, folder in (("train", "Train"), ("test", "Test")):
        pair_by_stem(layout, [(split, root / folder / "Image")], [root / folder / "GT_Object"], skip=_skip)
    return layout
