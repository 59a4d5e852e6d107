"""``eval-small-sam``: zero-shot scores of a small SAM checkpoint on held-out generic scenes and
the built-in domains.

    python run_benchmark.py eval-small-sam                 # the shipped checkpoint
    python run_benchmark.py eval-small-sam --checkpoint other.safetensors --n 200 --domain-n 32

Prompts: 3 foreground points drawn uniformly inside the target, single-mask output, logits > 0 at 256 px.
"""
from __future__ import annotations

from pathlib import Path

HELP = "zero-shot mIoU of a small SAM checkpoint (held-out generic scenes, built-in domains)"


def add_arguments(p) -> None:
    from benchmark.backbones.registry import checkpoint_dir, model_info

    p.add_argument("--checkpoint", type=Path, default=checkpoint_dir() / model_info("sam_small").checkpoint_file)
    p.add_argument("--n", type=int, default=200, help="held-out generic scenes")
    p.add_argument("--domain-n", type=int, default=32, help="test samples per built-in domain (0: skip)")
    p.add_argument("--points", type=int, default=3, help="foreground points per prompt")


def main(args) -> int:
    if args.n <= 0 or args.domain_n < 0 or args.points <= 0:
        raise ValueError("--n and --points must be positive, --domain-n non-negative")
    import torch

    from benchmark.backbones.small_sam.evaluate import evaluate_domains, evaluate_generic, load_small_sam
    from scenarios.synthetic import DOMAINS

    torch.set_num_threads(2)
    sam = load_small_sam(args.checkpoint)
    print(f"held-out generic mIoU ({args.points} points, n={args.n}): "
          f"{evaluate_generic(sam, n=args.n, n_points=args.points):.4f}")
    if args.domain_n:
        scores = evaluate_domains(sam, list(DOMAINS), n=args.domain_n, n_points=args.points)
        print("built-in domains, zero-shot mIoU: " + ", ".join(f"{d} {v:.3f}" for d, v in scores.items()))
    return 0
