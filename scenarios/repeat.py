"""Copy folder-format splits with each image repeated N times under a new name, for timing runs.

An image ``x.jpg`` becomes ``x_r0.jpg`` ... ``x_r{N-1}.jpg``, its mask likewise, and its stored
prompt points (masks/points.json) are copied to each new mask name. The sample fixtures hold 5 images
per domain, too few batches per epoch to measure a rate on a GPU; repeated, they are enough.
``--stream FILE --image-size S`` also writes a stream YAML over the copies in which each domain's
split doubles as its training set (for timing only).

    python -m scenarios.repeat SRC DST N [--split test] [--domains Kvasir ISIC]
        [--stream samples.yaml --image-size 1024]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def repeat_split(src: Path, dst: Path, repeat: int) -> int:
    """Copy ``src`` (a split with images/ and masks/) to ``dst`` with each image ``repeat`` times."""
    images, masks = src / "images", src / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise FileNotFoundError(f"{src}: needs images/ and masks/ folders")
    points_file = masks / "points.json"
    points = json.loads(points_file.read_text()) if points_file.exists() else {}
    (dst / "images").mkdir(parents=True, exist_ok=True)
    (dst / "masks").mkdir(parents=True, exist_ok=True)
    copied_points, count = {}, 0
    for image in sorted(p for p in images.iterdir() if p.is_file()):
        mask = next((m for m in masks.glob(image.stem + ".*") if m.name != "points.json"), None)
        if mask is None:
            raise FileNotFoundError(f"{image}: no mask named {image.stem}.* in {masks}")
        for k in range(repeat):
            name = f"{image.stem}_r{k}"
            shutil.copy(image, dst / "images" / (name + image.suffix))
            shutil.copy(mask, dst / "masks" / (name + mask.suffix))
            entry = points.get(mask.name, points.get(image.name))  # keyed by mask name, as the loader
            if entry is not None:
                copied_points[name + mask.suffix] = entry
            count += 1
    if copied_points:
        (dst / "masks" / "points.json").write_text(json.dumps(copied_points))
    return count


def write_stream(path: Path, dst: Path, domains: list[str], split: str, image_size: int) -> None:
    """A stream YAML over the copies; ``split`` is both the training and the test split."""
    import yaml

    stream = {"name": "samples", "image_size": image_size, "prompts": {"num_points": 3, "seed": 1234},
              "domains": [{"name": d, "root": str((dst / d).resolve()), "train": split, "test": split}
                          for d in domains]}
    path.write_text("# Repeated sample images; each split doubles as the training set (timing only).\n"
                    + yaml.safe_dump(stream, sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="folder holding one folder per domain")
    ap.add_argument("dst", type=Path, help="where the repeated copy goes (must not exist)")
    ap.add_argument("repeat", type=int, help="copies of each image (1 or more)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--domains", nargs="+", default=["Kvasir", "ISIC"])
    ap.add_argument("--stream", type=Path, help="also write a stream YAML over the copies here")
    ap.add_argument("--image-size", type=int, default=1024, help="the stream's image size")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        print(f"error: repeat must be 1 or more, got {args.repeat}", file=sys.stderr)
        return 2
    if args.dst.exists():
        print(f"error: {args.dst} exists; give a new folder", file=sys.stderr)
        return 2
    try:
        for domain in args.domains:
            n = repeat_split(args.src / domain / args.split, args.dst / domain / args.split, args.repeat)
            print(f"{domain}/{args.split}: {n} images")
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.stream is not None:
        write_stream(args.stream, args.dst, args.domains, args.split, args.image_size)
        print(f"stream: {args.stream}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
