"""``pretrain-small-sam``: pretrain the small SAM (`sam_small`) on the generic synthetic
distribution and export safetensors.

Example (the defaults: 6400 steps of 4 images x up to 6 prompted objects; 56 min on the 2-core CPU):
    python run_benchmark.py pretrain-small-sam --bf16 --out /tmp/sam_small.safetensors

The shipped checkpoint's exact command is recorded in checkpoint/README.md.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

HELP = "pretrain the small SAM (sam_small) on the generic synthetic distribution"


def add_arguments(p) -> None:
    from benchmark.backbones.small_sam.model import CHECKPOINT_FILE
    from benchmark.backbones.small_sam.recipe import PretrainConfig

    d = PretrainConfig()
    p.add_argument("--steps", type=int, default=d.steps, help="optimiser steps (sets the cosine schedule)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step")
    p.add_argument("--targets-per-image", type=int, default=d.targets_per_image,
                   help="objects per image, each with its own prompt, decoded from one image encoding")
    p.add_argument("--prompts-per-target", type=int, default=d.prompts_per_target,
                   help="independent prompts per object (each decoded and scored; the image is encoded once)")
    p.add_argument("--focal-alpha", type=float, default=d.focal_alpha, help="focal-loss weight of foreground pixels")
    p.add_argument("--dice-weight", type=float, default=d.dice_weight,
                   help="weight of the dice term next to 20 x focal (SAM: 1)")
    p.add_argument("--point-prob", type=float, default=d.point_prob,
                   help="probability that a target is prompted by points (else by its box)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (faster on CPUs with avx512_bf16, and on GPUs)")
    p.add_argument("--minutes", type=float, default=None, help="wall budget: stop (and save) after this long")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", type=Path, default=Path("checkpoint") / CHECKPOINT_FILE)
    p.add_argument("--state", type=Path, default=None,
                   help="training state for --resume (default: <out>.state.pt)")
    p.add_argument("--resume", action="store_true", help="continue from the training state")
    p.add_argument("--save-every", type=int, default=100, help="write the training state every N steps")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers (0 or 1 on the 2-core CPU)")
    p.add_argument("--device", default="cpu", help="torch device (cpu; cuda when one is available)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--eval-n", type=int, default=200, help="held-out generic scenes to evaluate at the end")
    p.add_argument("--log", type=Path, default=None, help="optional JSON-lines log of the training losses")


def check_arguments(args) -> None:
    """A one-line ValueError naming the first bad option."""
    if args.workers < 0:
        raise ValueError("--workers must be >= 0")
    if not 0 < args.focal_alpha < 1:
        raise ValueError("--focal-alpha must lie in (0, 1)")
    if args.dice_weight < 0:
        raise ValueError("--dice-weight must be non-negative")
    if not 0 <= args.point_prob <= 1:
        raise ValueError("--point-prob must lie in [0, 1]")
    for name in ("steps", "batch_size", "targets_per_image", "prompts_per_target", "save_every", "threads"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if args.minutes is not None and args.minutes <= 0:
        raise ValueError("--minutes must be positive")


def main(args) -> int:
    check_arguments(args)
    import torch

    from benchmark.backbones.small_sam.evaluate import evaluate_generic
    from benchmark.backbones.small_sam.pretrain import PretrainConfig, export_safetensors, train

    torch.set_num_threads(args.threads)
    cfg = PretrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                         weight_decay=args.weight_decay, seed=args.seed, bf16=args.bf16,
                         targets_per_image=args.targets_per_image, focal_alpha=args.focal_alpha,
                         point_prob=args.point_prob, prompts_per_target=args.prompts_per_target,
                         dice_weight=args.dice_weight)
    state = args.state or args.out.with_name(args.out.name + ".state.pt")
    log_file = open(args.log, "a") if args.log else None

    def log(step: int, logs: dict) -> None:
        if log_file is not None:
            log_file.write(json.dumps({"step": step, **logs}) + "\n")
            log_file.flush()

    t0 = time.monotonic()
    sam, done = train(cfg, state_path=state, resume=args.resume, minutes=args.minutes,
                      save_every=args.save_every, workers=args.workers, log=log, device=args.device)
    wall = time.monotonic() - t0
    digest = export_safetensors(sam, args.out)
    print(f"trained {done}/{cfg.steps} steps in {wall / 60:.1f} min; wrote {args.out} "
          f"({args.out.stat().st_size / 1e6:.2f} MB) sha256 {digest}")
    if args.eval_n > 0:
        miou = evaluate_generic(sam, n=args.eval_n)
        print(f"held-out generic mIoU (3 points, n={args.eval_n}): {miou:.4f}")
    if log_file is not None:
        log_file.close()
    return 0
