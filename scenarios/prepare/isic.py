"""ISIC 2016 Task 1 and ISIC 2017 Part 1: SOURCE is the folder holding the unpacked zips.

- isic2016: `ISBI2016_ISIC_Part1_{Training,Test}_{Data,GroundTruth}/` (900 / 379).
- isic2017: `ISIC-2017_{Training,Validation,Test_v2}_Data/` and `..._Part1_GroundTruth/`
  (2000 / 150 / 600 as train / val / test).
Images `ISIC_<7 digits>.jpg`; masks `ISIC_<id>_Segmentation.png` (`_segmentation.png` accepted).
The image folders also hold `ISIC_*_superpixels.png` and a metadata CSV: dropped, named.
A zip unpacked into a folder of its own name (`X/X/`) is accepted.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from scenarios.prepare.common import SUPERPIXELS, Context, Layout, pair_by_stem, unwrap

FOLDERS = {
    "isic2016": {"train": ("ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth"),
                 "test": ("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth")},
    "isic2017": {"train": ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
                 "val": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
                 "test": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth")},
}


def _skip(name: str) -> Optional[str]:
    return SUPERPIXELS if Path(name).stem.lower().endswith("_superpixels") else None


def _mask_stems(stem: str) -> tuple:
    return (f"{stem}_Segmentation", f"{stem}_segmentation")


def collect(source: Path, ctx: Context) -> Layout:
    folders = FOLDERS[ctx.dataset]
    if not source.is_dir():
        raise FileNotFoundError(f"{ctx.dataset}: source folder not found: {source}")
    expected = ", ".join(name for pair in folders.values() for name in pair)
    for pair in folders.values():
        for name in pair:
            if not (source / name).is_dir():
                raise ValueError(f"{ctx.dataset}: no {name} folder under {source} (expected the "
                                 f"unpacked official zips side by side: {expected})")
    layout = Layout(splits=tuple(folders))
    for split, (data, truth) in folders.items():
        pair_by_stem(layout, [(split, unwrap(source / data))], [unwrap(source / truth)],
                     mask_stems=_mask_stems, skip=_skip)
    return layout
