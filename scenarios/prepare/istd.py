"""ISTD (Wang et al. 2018): `ISTD_Dataset/{train/{train_A,train_B,train_C}, test/{test_A,test_B,test_C}}`:
A = shadow image (the input), B = shadow mask (the target), C = shadow-free (unused); names
`<scene>-<k>.png`, identical across A/B/C. Official split 1330 / 540."""
from __future__ import annotations

from pathlib import Path

from scenarios.prepare.common import Context, Layout, find_root, pair_by_stem

EXPECTED = "the ISTD_Dataset layout: train/train_A, train/train_B, test/test_A, test/test_B"


def collect(source: Path, ctx: Context) -> Layout:
    required = ("train/train_A", "train/train_B", "test/test_A", "test/test_B")
    root = find_root(source, required, ("ISTD_Dataset",), ctx.dataset, EXPECTED)
    layout = Layout(splits=("train", "test"))
    for split in layout.splits:
        pair_by_stem(layout, [(split, root / split / f"{split}_A")], [root / split / f"{split}_B"])
    return layout
