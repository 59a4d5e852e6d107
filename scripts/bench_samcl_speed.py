"""Side-by-side CPU timings of SAMCL from the block-6 cache against the reference's way.

(a) one training step (batch 1): from the cached block-6 tokens vs from the image (frozen blocks
    0-6 under no_grad, then the same adapted blocks 7-11 + neck + decoder + loss + backward + Adam).
(b) one routed test prediction: ours (cached block-6 tokens -> pooled vector -> selector -> module
    already in memory made active -> resume at block 7 -> decode) vs the reference's route (tap at
    block 6 from the image, deep-copy the whole model, load the chosen module from disk, attach it
    to the copy, resume at block 7 -> decode).

SAM ViT-B at 1024 px with seeded random weights (no checkpoint needed; speed does not depend on the
values) and a released-shape AugModule. Warm-up 1 iteration, then the median of N.

    .venv/bin/python scripts/bench_samcl_speed.py [--iters 3] [--threads T]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.backbones import build_backbone  # noqa: E402
from methods.losses import sam_loss  # noqa: E402
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
    args = ap.parse_args()
    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    bb = build_backbone("sam_vit_b", None, device=str(dev))
    cfg = config_for_backbone(bb)
    domains = ["d0", "d1", "d2", "d3", "d4"]
    ms = ModuleSet(cfg).attach(bb.encoder_blocks)
    for name in domains:
        m = ms.add(name)
        with torch.no_grad():  # trained-looking values (zero B would let nothing change)
            for p in m.parameters():
                p.normal_(0, 0.02)
    ms.to(dev)
    selector = ModuleSelector(cfg.width, len(domains) + 1).eval().to(dev)

    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (1, 3, 1024, 1024), generator=g, dtype=torch.uint8)
    points = torch.rand(1, 3, 2, generator=g) * 1023
    labels = torch.ones(1, 3)
    mask = (torch.rand(1, 1024, 1024, generator=g) > 0.5).float()
    image, points, labels, mask = (t.to(dev) for t in (image, points, labels, mask))

    tmp = Path(tempfile.mkdtemp(prefix="samcl_bench_"))
    from safetensors.torch import load_file, save_file

    with torch.no_grad():
        save_file({"tokens": bb.features_at(image, TAP)["tokens"].contiguous()}, str(tmp / "cache.safetensors"))
    for name in domains:  # the reference keeps one module file per domain
        torch.save(ms[name].state_dict(), tmp / f"{name}.pth")

    # (a) training step
    module = ms["d0"]
    opt = torch.optim.Adam(module.parameters(), lr=5e-3)

    def step(feats: dict) -> None:
        with ms.active("d0", points):
            enc = bb.features_from(feats, TAP, pre_neck=ms.pre_neck, post_neck=ms.post_neck)
            low, iou = bb.decode(enc, points, labels)
        loss = sam_loss(bb.upscale(low), iou, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def train_from_image() -> None:
        with torch.no_grad():
            feats = bb.features_at(image, TAP)
        step(feats)

    def train_from_cache() -> None:
        step(load_file(str(tmp / "cache.safetensors"), device=str(dev)))

    # (b) routed prediction
    @torch.no_grad()
    def route_ours() -> torch.Tensor:
        feats = load_file(str(tmp / "cache.safetensors"), device=str(dev))
        pick = int(selector(pooled_tap(feats["tokens"])).argmax(1))
        name = domains[pick] if pick < len(domains) else None  # last class: general domain, vanilla
        with ms.active(name, points):
            enc = bb.features_from(feats, TAP, pre_neck=ms.pre_neck, post_neck=ms.post_neck)
            return bb.decode(enc, points, labels)[0]

    @torch.no_grad()
    def route_reference() -> torch.Tensor:
        feats = bb.features_at(image, TAP)
        pick = int(selector(pooled_tap(feats["tokens"])).argmax(1))
        model = copy.deepcopy(bb)  # the reference copies the whole SAM per image
        ref = ModuleSet(cfg).attach(model.encoder_blocks)
        mod = AugModule(cfg)
        mod.load_state_dict(torch.load(tmp / f"{domains[pick % len(domains)]}.pth", weights_only=True,
                                       map_location=dev))
        ref.add("m", mod.to(dev))
        with ref.active("m", points):
            enc = model.features_from(feats, TAP, pre_neck=ref.pre_neck, post_neck=ref.post_neck)
            return model.decode(enc, points, labels)[0]

    print(f"torch {torch.__version__}, device {dev}, threads {torch.get_num_threads()}, median of {args.iters} after 1 warm-up")
    t_img = timed(train_from_image, args.iters)
    t_cache = timed(train_from_cache, args.iters)
    print(f"(a) training step: from image {t_img * 1e3:.1f} ms, from block-6 cache {t_cache * 1e3:.1f} ms "
          f"-> {t_img / t_cache:.2f}x")
    t_ref = timed(route_reference, args.iters)
    t_ours = timed(route_ours, args.iters)
    print(f"(b) routed prediction: reference route {t_ref * 1e3:.1f} ms, ours from cache {t_ours * 1e3:.1f} ms "
          f"-> {t_ref / t_ours:.2f}x")
    ms.detach()


if __name__ == "__main__":
    main()
