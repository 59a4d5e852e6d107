"""Side-by-side CPU timings of SAMCL from the block-6 cache against the reference's way.

(a) one training step (batch 1): from the cached block-6 tokens vs from the image (frozen blocks
    0-6 under no_grad, then the same adapted blocks 7-11 + neck + decoder + loss + backward + Adam).
(b) one routed test prediction: ours (cached block-6 tokens -> pooled vector -> selector -> module
    already in memory made active -> resume at block 7 -> decode) vs the reference's route (tap at
    block 6 from the image, deep-copy the whole model, load the chosen module from disk, attach it
    to the copy, resume at block 7 -> decode).

SAM ViT-B at 1024 px with seeded random weights (no checkpoint needed; speed does not depend on the
values) and a released-shape AugModule. Warm-up 1 iteration, then the median of N; images per
second = batch size / median time. ``--precision bf16``, ``--channels-last`` and ``--attention`` time the
options the harness runs with the same names (docs/scaling.md). ``--reference-as-released`` runs
the reference's two ways (from the image; the reference route) as the reference does: official
attention, fp32, one image at a time (B of them per timed iteration), while ours keep the options.

    .venv/bin/python scripts/bench_samcl_speed.py [--iters 3] [--threads T] [--device cuda]
        [--batch-size B] [--precision fp32|bf16] [--channels-last]
        [--attention official|sdpa|folded] [--reference-as-released]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.backbones import build_backbone  # noqa: E402
from benchmark.backbones.sam1 import sam_attention  # noqa: E402
from benchmark.core.losses import sam_loss  # noqa: E402
from methods.samcl.augmodule import AugModule, ModuleSet, config_for_backbone  # noqa: E402
from methods.samcl.selector import ModuleSelector, pooled_tap  # noqa: E402

TAP = "block6"


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, iters: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(iters):
        _sync()
        t = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=3, help="timed iterations per case (median)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the cache file is read to that device)")
    ap.add_argument("--batch-size", type=int, default=1, help="images per step / prediction")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast")
    ap.add_argument("--channels-last", action="store_true", help="channels-last model and images")
    ap.add_argument("--attention", choices=("official", "sdpa", "folded"), default="official",
                    help="the ViT attention path (the run option attention; official: as before it existed)")
    ap.add_argument("--reference-as-released", action="store_true",
                    help="the reference's ways in fp32 with the official attention, one image at a time")
    args = ap.parse_args()
    dev = torch.device(args.device)
    b = args.batch_size
    autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else contextlib.nullcontext())
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    bb = build_backbone("sam_vit_b", None, device=str(dev))
    bb.set_attention(args.attention)
    cfg = config_for_backbone(bb)
    domains = ["d0", "d1", "d2", "d3", "d4"]
    ms = ModuleSet(cfg).attach(bb.encoder_blocks)
    for name in domains:
        m = ms.add(name)
        with torch.no_grad():  # trained-looking values (zero B would let nothing change)
            for p in m.parameters():
                p.normal_(0, 0.02)
    ms.to(dev)
    if args.channels_last:
        bb.to(memory_format=torch.channels_last)
    selector = ModuleSelector(cfg.width, len(domains) + 1).eval().to(dev)

    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (b, 3, 1024, 1024), generator=g, dtype=torch.uint8)
    points = torch.rand(b, 3, 2, generator=g) * 1023
    labels = torch.ones(b, 3)
    mask = (torch.rand(b, 1024, 1024, generator=g) > 0.5).float()
    image, points, labels, mask = (t.to(dev) for t in (image, points, labels, mask))
    if args.channels_last:
        image = image.contiguous(memory_format=torch.channels_last)

    tmp = Path(tempfile.mkdtemp(prefix="samcl_bench_"))
    from safetensors.torch import load_file, save_file

    with torch.no_grad():
        save_file({"tokens": bb.features_at(image, TAP)["tokens"].contiguous()}, str(tmp / "cache.safetensors"))
    for name in domains:  # the reference keeps one module file per domain
        torch.save(ms[name].state_dict(), tmp / f"{name}.pth")

    # (a) training step
    module = ms["d0"]
    opt = torch.optim.Adam(module.parameters(), lr=5e-3)

    def step(feats: dict, k=slice(None), cast=autocast) -> None:
        with ms.active("d0", points[k]), cast:
            enc = bb.features_from(feats, TAP, pre_neck=ms.pre_neck, post_neck=ms.post_neck)
            low, iou = bb.decode(enc, points[k], labels[k])
        loss = sam_loss(bb.upscale(low.float()), iou.float(), mask[k])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def train_from_image(k=slice(None), cast=autocast) -> None:
        with torch.no_grad(), cast:
            feats = bb.features_at(image[k], TAP)
        step(feats, k, cast)

    def train_from_cache() -> None:
        step(load_file(str(tmp / "cache.safetensors"), device=str(dev)))

    # (b) routed prediction
    @torch.no_grad()
    def route_ours() -> torch.Tensor:
        feats = load_file(str(tmp / "cache.safetensors"), device=str(dev))
        pick = int(selector(pooled_tap(feats["tokens"])).argmax(1)[0])  # one domain per batch here
        name = domains[pick] if pick < len(domains) else None  # last class: general domain, vanilla
        with ms.active(name, points), autocast:
            enc = bb.features_from(feats, TAP, pre_neck=ms.pre_neck, post_neck=ms.post_neck)
            return bb.decode(enc, points, labels)[0]

    @torch.no_grad()
    def route_reference(k=slice(None), cast=autocast) -> torch.Tensor:
        with cast:
            feats = bb.features_at(image[k], TAP)
        pick = int(selector(pooled_tap(feats["tokens"].float())).argmax(1)[0])
        model = copy.deepcopy(bb)  # the reference copies the whole SAM per image
        ref = ModuleSet(cfg).attach(model.encoder_blocks)
        mod = AugModule(cfg)
        mod.load_state_dict(torch.load(tmp / f"{domains[pick % len(domains)]}.pth", weights_only=True,
                                       map_location=dev))
        ref.add("m", mod.to(dev))
        with ref.active("m", points[k]), cast:
            enc = model.features_from(feats, TAP, pre_neck=ref.pre_neck, post_neck=ref.post_neck)
            return model.decode(enc, points[k], labels[k])[0]

    def as_released(fn):
        """``fn`` the reference's way: official attention, fp32, one image at a time."""
        def run() -> None:
            sam_attention(bb.sam, "official")
            try:
                for k in range(b):
                    fn(slice(k, k + 1), contextlib.nullcontext())
            finally:
                sam_attention(bb.sam, bb.attention)
        return run

    reference_ways = ((as_released(train_from_image), as_released(route_reference))
                      if args.reference_as_released else (train_from_image, route_reference))

    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, device {dev} ({name}), threads {torch.get_num_threads()}, "
          f"batch {b}, {args.precision}{', channels-last' if args.channels_last else ''}, "
          f"median of {args.iters} after 1 warm-up")

    def report(label: str, slow_name: str, slow: float, fast_name: str, fast: float) -> None:
        print(f"{label}: {slow_name} {slow * 1e3:.1f} ms ({b / slow:.3g} img/s), {fast_name} "
              f"{fast * 1e3:.1f} ms ({b / fast:.3g} img/s) -> {slow / fast:.2f}x")

    released = " (as released: fp32, official attention, 1 image at a time)" if args.reference_as_released else ""
    report("(a) training step", f"from image{released}", timed(reference_ways[0], args.iters),
           "from block-6 cache", timed(train_from_cache, args.iters))
    report("(b) routed prediction", f"reference route{released}", timed(reference_ways[1], args.iters),
           "ours from cache", timed(route_ours, args.iters))
    ms.detach()


if __name__ == "__main__":
    main()
