#!/usr/bin/env python
"""Measure one training step of a method from cached features against the same step from images.

    python scripts/bench_cache_speed.py                       # finetune_decoder, sam_small, batch 8
    python scripts/bench_cache_speed.py --backbone sam_vit_b --batch-size 1 --repeats 3

Both steps run the method's real code path (``SAMStrategy.run_model`` + the shared loss + backward
+ Adam step); "from images" also runs the frozen encoder up to the method's tap, which the cache
replaces by a read. Prints the median time of each and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--method", default="finetune_decoder")
    parser.add_argument("--backbone", default="sam_small")
    parser.add_argument("--checkpoint", default="none", help="auto, none or a path")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args()

    import torch

    from benchmark.backbones import build_backbone
    from benchmark.core.losses import sam_loss
    from benchmark.core.registry import get_method

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone = build_backbone(args.backbone, checkpoint=None if args.checkpoint == "none" else args.checkpoint)
    cls = get_method(args.method)
    strategy = cls(backbone=backbone, domain_names=["a"], n_trained=1, seed=0)
    strategy.make_optimizer()
    S, B = backbone.image_size, args.batch_size
    images = torch.randint(0, 256, (B, 3, S, S), dtype=torch.uint8)
    masks = torch.zeros(B, S, S)
    masks[:, S // 4: S // 2, S // 4: S // 2] = 1
    points = torch.full((B, 3, 2), S * 3 / 8.0)
    common = {"mask": masks, "points": points, "point_labels": torch.ones(B, 3)}
    with torch.no_grad():
        cached = {k: v.clone() for k, v in backbone.features_at(images, cls.tap).items()}

    def step(batch) -> float:
        t0 = time.perf_counter()
        low_res, iou_pred = strategy.run_model(batch)
        loss = sam_loss(backbone.upscale(low_res), iou_pred, batch["mask"])
        strategy.optimizer.zero_grad()
        loss.backward()
        strategy.optimizer.step()
        return time.perf_counter() - t0

    results = {}
    for name, batch in (("from images", {"image": images, **common}),
                        ("from cache", {"features": cached, **common})):
        step(batch)  # warm-up
        results[name] = statistics.median(step(batch) for _ in range(args.repeats))
    ratio = results["from images"] / results["from cache"]
    print(f"{args.method} on {args.backbone} ({S} px), batch {B}, tap {cls.tap}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}:")
    for name, seconds in results.items():
        print(f"  one training step {name:<12s} {seconds * 1000:9.1f} ms")
    print(f"  speed-up from the cache: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
