#!/usr/bin/env python
"""Zero-shot scores of a small SAM checkpoint: held-out generic scenes and the built-in domains.

    python scripts/eval_small_sam.py                       # the shipped checkpoint
    python scripts/eval_small_sam.py --checkpoint other.safetensors --n 200 --domain-n 32

Prompts: 3 foreground points drawn uniformly inside the target, single-mask output, logits > 0 at 256 px.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoint" / "sam_small_synthetic.safetensors")
    p.add_argument("--n", type=int, default=200, help="held-out generic scenes")
    p.add_argument("--domain-n", type=int, default=32, help="test samples per built-in domain (0: skip)")
    p.add_argument("--points", type=int, default=3, help="foreground points per prompt")
    args = p.parse_args(argv)
    if args.n <= 0 or args.domain_n < 0 or args.points <= 0:
        p.error("--n and --points must be positive, --domain-n non-negative")
    import torch

    from benchmark.pretrain import evaluate_domains, evaluate_generic, load_small_sam
    from scenarios.synthetic import DOMAINS

    torch.set_num_threads(2)
    sam = load_small_sam(args.checkpoint)
    print(f"held-out generic mIoU ({args.points} points, n={args.n}): "
          f"{evaluate_generic(sam, n=args.n, n_points=args.points):.4f}")
    if args.domain_n:
        scores = evaluate_domains(sam, list(DOMAINS), n=args.domain_n, n_points=args.points)
        print("built-in domains, zero-shot mIoU: " + ", ".join(f"{d} {v:.3f}" for d, v in scores.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
