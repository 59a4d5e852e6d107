"""``points``: write masks/points.json (the point prompts) for a folder-format split."""
from __future__ import annotations

HELP = "write masks/points.json for a folder-format split"


def add_arguments(p) -> None:
    p.add_argument("folder", help="a split folder holding images/ and masks/ (e.g. data/Kvasir/train)")
    p.add_argument("--num-points", type=int, default=3)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--mask-reading", choices=("threshold", "reference"), default="threshold")
    p.add_argument("--overwrite", action="store_true")


def main(args) -> int:
    from scenarios.points import write_points_json

    path = write_points_json(args.folder, num_points=args.num_points, seed=args.seed,
                             mask_reading=args.mask_reading, overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0
