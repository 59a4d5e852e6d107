"""One SAM ViT-B block, official attention against the SDPA paths (run option ``attention``:
``sdpa``, the bias as a mask, and ``folded``, the bias folded into the queries and keys).

A randomly initialised official ``Block`` of ViT-B (width 768, 12 heads, rel-pos on, non-zero
rel-pos tables) on 64x64 tokens (1024 px), windowed (14x14 windows, padded to 70x70) and global;
batch 1, fp32 unless ``--dtype bf16`` (autocast). Forward under no_grad, and forward + backward to
the input (frozen weights, as a training step from a feature cache through adapters). Both paths are
timed in the same run, alternating, median of ``--iters`` after ``--warmup``; the ratios are official
time / the path's time (above 1: the path is faster).

    python scripts/bench_attention.py [--device cpu|cuda] [--iters N] [--warmup N] [--dtype fp32|bf16]
        [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark.backbones.sam1 import sam_attention  # noqa: E402

PATHS = ("official", "sdpa", "folded")


def vit_b_block(window: int, device: torch.device) -> nn.Module:
    from segment_anything.modeling.image_encoder import Block

    torch.manual_seed(0)
    block = Block(dim=768, num_heads=12, mlp_ratio=4.0, qkv_bias=True,
                  norm_layer=partial(nn.LayerNorm, eps=1e-6), act_layer=nn.GELU, use_rel_pos=True,
                  window_size=window, input_size=(64, 64))
    with torch.no_grad():
        block.attn.rel_pos_h.normal_(0, 0.02)
        block.attn.rel_pos_w.normal_(0, 0.02)
    return block.to(device).eval().requires_grad_(False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _once(block: nn.Module, x: torch.Tensor, backward: bool, autocast) -> float:
    _sync(x.device)
    start = time.perf_counter()
    if backward:
        xin = x.detach().requires_grad_(True)
        with autocast():
            out = block(xin)
        out.float().sum().backward()
    else:
        with torch.no_grad(), autocast():
            block(x)
    _sync(x.device)
    return time.perf_counter() - start


def measure(block: nn.Module, x: torch.Tensor, backward: bool, args, autocast) -> dict:
    times = {path: [] for path in PATHS}
    for i in range(args.warmup + args.iters):
        for path in PATHS:  # alternate, so contention hits all alike
            sam_attention(block, path)
            t = _once(block, x, backward, autocast)
            if i >= args.warmup:
                times[path].append(t)
    return {path: statistics.median(ts) for path, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bf16 = args.dtype == "bf16"
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
    x = torch.randn(1, 64, 64, 768, device=device)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, {args.dtype}, "
          f"median of {args.iters} after {args.warmup} warm-up")
    print("| ViT-B block, 64x64 tokens, batch 1 | official ms | sdpa ms | folded ms "
          "| official / sdpa | official / folded |")
    print("|---|---|---|---|---|---|")
    for window, kind in ((14, "windowed 14"), (0, "global")):
        block = vit_b_block(window, device)
        for backward in (False, True):
            t = measure(block, x, backward, args, autocast)
            what = "forward + backward" if backward else "forward"
            ms = " | ".join(f"{1e3 * t[path]:.1f}" for path in PATHS)
            print(f"| {kind}, {what} | {ms} | {t['official'] / t['sdpa']:.2f} | "
                  f"{t['official'] / t['folded']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
