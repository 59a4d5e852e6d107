"""``prepare``: an official dataset download, exactly as it comes, -> the folder format.

``run_benchmark.py prepare DATASET SOURCE OUT``: OUT gets ``<split>/{images,masks}`` with 0/255 PNG
masks, ``masks/points.json`` per split and ``manifest.json``; a summary (counts, dropped files and
why, the fingerprint) is printed at the end. See scenarios/prepare.
"""
from __future__ import annotations

HELP = "convert an official dataset download into the folder format"



def add_arguments(p) -> None:
    from scenarios.prepare import DATASETS  # light: no torch, no image libraries

    p.add_argument("dataset", choices=list(DATASETS), help="which dataset SOURCE holds")
    p.add_argument("source", help="the unpacked official download (or the folder holding the unpacked archives)")
    p.add_argument("out", help="the folder to write (created atomically)")
    p.add_argument("--split-from", metavar="PATH",
                   help="split lists: a folder of the reference's <split>/points.json, a JSON "
                        "{\"train\": [names], \"test\": [names]} or a folder of <split>.txt/.json "
                        "(default: the official split; kvasir-seg and coco: the shipped reference lists)")
    p.add_argument("--points-from", metavar="PATH",
                   help="a folder of the reference's <split>/points.json: copy its point prompts "
                        "(others are generated as the points command does)")
    p.add_argument("--mask-reading", choices=("threshold", "reference"), default="threshold",
                   help="threshold: value >= --threshold is foreground; reference: only 255 (SAMCL's floor(v/255))")
    p.add_argument("--threshold", type=int, default=128)
    p.add_argument("--coco-instance", choices=("largest", "first", "smallest", "points"),
                   help="which COCO instance becomes the mask (default: points with --points-from, else largest)")
    p.add_argument("--resize-masks", action="store_true",
                   help="NEAREST-resize a mask whose size differs from its image (default: drop the pair)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT that holds different data")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--num-points", type=int, default=3)
    p.add_argument("--seed", type=int, default=1234)


def main(args) -> int:
    from scenarios.prepare import prepare
    from scenarios.prepare.summary import format_summary

    summary = prepare(args.dataset, args.source, args.out, split_from=args.split_from,
                      points_from=args.points_from, mask_reading=args.mask_reading,
                      threshold=args.threshold, coco_instance=args.coco_instance,
                      resize_masks=args.resize_masks, overwrite=args.overwrite,
                      progress=not args.no_progress, num_points=args.num_points, seed=args.seed)
    print(format_summary(summary))
    return 0
