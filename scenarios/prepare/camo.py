"""CAMO (CAMO-COCO v1): `.../Camouflage/{Images/Train, Images/Test, GT}` (or `CAMO-V.1.0-CVIU2019/
{Images/Train, Images/Test, GT}`): images `camourflage_NNNNN.jpg`, one GT folder shared by both
splits with `camourflage_NNNNN.png`. The split is given by the image folder (1000 / 250); the
Non-Camouflage part (COCO images with empty GTs) is not used."""
from __future__ import annotations

from pathlib import Path

from scenarios.prepare.common import Context, Layout, find_root, pair_by_stem

CANDIDATES = ("Camouflage", "CAMO-COCO-V.1.0-CVIU2019/Camouflage", "CAMO-V.1.0-CVIU2019",
              "CAMO-COCO-V.1.0-CVIU2019")
EXPECTED = ("the CAMO layout: Camouflage/Images/Train, Camouflage/Images/Test and the shared "
            "Camouflage/GT (CAMO-COCO-V.1.0-CVIU2019 or CAMO-V.1.0-CVIU2019)")


def collect(source: Path, ctx: Context) -> Layout:
    root = find_root(source, ("Images/Train", "Images/Test", "GT"), CANDIDATES, ctx.dataset, EXPECTED)
    layout = Layout(splits=("train", "test"))
    pair_by_stem(layout, [("train", root / "Images" / "Train"), ("test", root / "Images" / "Test")],
                 [root / "GT"])
    return layout
