"""Evaluate a released (or exported: export_official.py) SAMCL module set on a folder-format
dataset, as the reference's test.py does: per image, tap the last untouched block, let the
selector pick, run that module (vanilla SAM for classes without one), score at the image size.

    python -m methods.samcl.evaluate_official --released ../shared/fixtures/samcl_official/SAM1 \\
        --checkpoint checkpoint/sam_vit_b_01ec64.pth --data /data/Kvasir --split test
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Sequence

import torch

from methods.samcl.augmodule import ModuleSet
from methods.samcl.selector import ModuleSelector, pooled_tap


@torch.no_grad()
def evaluate_module_set(backbone, module_set: ModuleSet, selector: ModuleSelector, classes: Sequence[str],
                        dataset, tap: str, force: str | None = None) -> dict:
    """Mean IoU / Dice / MAE over ``dataset`` and how often each class was picked.

    ``force``: route every image to this class instead of the selector's pick.
    """
    from benchmark.reporting.metrics import image_scores

    if not module_set.attached:
        module_set.attach(backbone.encoder_blocks)
    selector.eval()
    sums = {"iou": 0.0, "dice": 0.0, "mae": 0.0}
    picks: Counter = Counter()
    for i in range(len(dataset)):
        item = dataset[i]
        feats = backbone.features_at(item["image"][None], tap)
        pick = classes[int(selector(pooled_tap(feats["tokens"])).argmax(1))] if force is None else force
        picks[pick] += 1
        name = pick if pick in module_set.names() else None
        points, labels = item["points"][None], item["point_labels"][None]
        with module_set.active(name, points):
            enc = backbone.features_from(feats, tap, pre_neck=module_set.pre_neck, post_neck=module_set.post_neck)
        low, _ = backbone.decode(enc, points, labels)
        scores = image_scores(backbone.upscale(low), item["mask"][None])
        for k in sums:
            sums[k] += float(scores[k][0])
    n = max(len(dataset), 1)
    return {**{k: v / n for k, v in sums.items()}, "images": len(dataset), "picks": dict(picks)}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Evaluate a released SAMCL module set on a folder dataset.")
    ap.add_argument("--released", required=True, help="folder with <domain>.pth and Module_Selector.pth (SAM1 or SAM2)")
    ap.add_argument("--checkpoint", required=True, help="the official SAM / SAM2.1 weights file")
    ap.add_argument("--backbone", default=None,
                    help="default: an export's (export.json), else sam_vit_b / sam2.1_hiera_t by the modules' shape")
    ap.add_argument("--data", required=True, help="dataset root (<root>/<split>/images, masks, masks/points.json)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--force", default=None, help="route every image to this class (e.g. Kvasir) instead of the selector")
    ap.add_argument("--mask-reading", default="threshold", choices=["threshold", "reference"])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    from benchmark.backbones import build_backbone
    from methods.samcl.official import load_official_set, read_export_info
    from scenarios.folder import FolderSegmentationDataset

    module_set, selector, classes = load_official_set(args.released)
    info = read_export_info(args.released) or {}
    name = args.backbone or info.get("backbone") or (
        "sam2.1_hiera_t" if module_set.config.neck_dims is None else "sam_vit_b")
    backbone = build_backbone(name, checkpoint=args.checkpoint, device=args.device)
    if args.force is not None and args.force not in classes:
        raise SystemExit(f"--force: unknown class {args.force!r}; expected one of {classes}")
    dataset = FolderSegmentationDataset(Path(args.data), args.split, image_size=backbone.image_size,
                                        domain_index=0, mask_reading=args.mask_reading)
    module_set.to(args.device)
    selector.to(args.device)
    res = evaluate_module_set(backbone, module_set, selector, classes, dataset,
                              tap=module_set.config.tap, force=args.force)
    print(f"{args.data} ({res['images']} images): IoU {res['iou']:.4f}  Dice {res['dice']:.4f}  "
          f"MAE {res['mae']:.4f}  picks {res['picks']}")


if __name__ == "__main__":
    main()
