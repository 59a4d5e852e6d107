"""Kvasir-SEG: `kvasir-seg.zip` -> `Kvasir-SEG/{images,masks}/<id>.jpg` (masks are RGB JPEGs with
compression noise, same name as the image; `kavsir_bboxes.json` beside them is not used).
No official test split: the reference's 800/200 name lists ship in splits/kvasir-seg.json."""
from __future__ import annotations

from pathlib import Path

from scenarios.prepare.common import Context, Layout, find_root, pair_by_stem

NEEDS_SPLIT_LIST = True


def collect(source: Path, ctx: Context) -> Layout:
    root = find_root(source, ("images", "masks"), ("Kvasir-SEG", "kvasir-seg/Kvasir-SEG"), ctx.dataset,
                     "the Kvasir-SEG layout: Kvasir-SEG/images/<id>.jpg, Kvasir-SEG/masks/<id>.jpg")
    layout = Layout(splits=())
    pair_by_stem(layout, [(None, root / "images")], [root / "masks"])
    return layout
