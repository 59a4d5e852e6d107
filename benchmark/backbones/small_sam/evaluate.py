"""Zero-shot scores of a small SAM: held-out generic scenes and the built-in synthetic domains.

Used by ``run_benchmark.py eval-small-sam`` and by the end of ``run_benchmark.py pretrain-small-sam``.
Prompts: foreground points drawn uniformly inside the target, single-mask output, logits > 0 at the
model's input size, IoU as ``benchmark.core.losses.hard_iou``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones.small_sam.decoding import decode_batch, sam_of, to_device
from benchmark.backbones.small_sam.generic import GenericDataset, sample_inside
from benchmark.backbones.small_sam.model import IMAGE_SIZE
from benchmark.core.losses import hard_iou

HELD_OUT_SEED = 1_000_003  # generic evaluation scenes; training uses --seed (default 0)


def load_small_sam(path: Path) -> nn.Module:
    """The weights in ``path`` in a small Sam (through ``build_backbone("sam_small")``), eval mode."""
    from benchmark.backbones import build_backbone

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"small SAM checkpoint not found: {path}")
    return build_backbone("sam_small", checkpoint=path).sam.eval()


def _batch_ious(sam: nn.Module, batch: list[dict]) -> list[float]:
    device = sam.pixel_mean.device
    batch = [to_device(it, device) for it in batch]
    images = torch.stack([it["image"] for it in batch]).float()
    embeds = sam.image_encoder(sam.preprocess(images))
    low, _ = decode_batch(sam, embeds, batch, list(range(len(batch))))
    logits = F.interpolate(low[:, :1], images.shape[-2:], mode="bilinear", align_corners=False)
    return hard_iou(logits[:, 0], torch.stack([it["mask"] for it in batch])).tolist()


@torch.no_grad()
def evaluate_items(model: nn.Module, items, batch_size: int = 8) -> list[float]:
    """Per-item IoU with the items' point prompts, single-mask output, logits thresholded at 0 at S."""
    sam = sam_of(model)
    was_training = sam.training
    sam.eval()
    ious: list[float] = []
    batch: list[dict] = []
    for it in items:
        batch.append(it)
        if len(batch) == batch_size:
            ious += _batch_ious(sam, batch)
            batch = []
    if batch:
        ious += _batch_ious(sam, batch)
    sam.train(was_training)
    return ious


def evaluate_generic(backbone: nn.Module, n: int = 200, seed: int = HELD_OUT_SEED, n_points: int = 3,
                     batch_size: int = 8) -> float:
    """Zero-shot mIoU on `n` held-out generic scenes with `n_points` foreground points (single mask)."""
    size = int(sam_of(backbone).image_encoder.img_size)
    ious = evaluate_items(backbone, GenericDataset(n, seed, size, n_points), batch_size)
    return float(np.mean(ious))


def domain_items(domain: str, n: int = 32, n_points: int = 3, seed: int = 0, size: int = IMAGE_SIZE):
    """The first `n` test samples of a built-in synthetic domain (stream seed `seed`), each prompted by
    `n_points` foreground points drawn uniformly inside its mask (deterministic per index)."""
    from scenarios.synthetic import generate_sample

    for i in range(n):
        image, mask = generate_sample(domain, seed, "test", i, size)
        mask = mask > 0
        pts = sample_inside(mask, n_points, np.random.default_rng([seed, i]))
        yield {"image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous(),
               "mask": torch.from_numpy(mask.astype(np.float32)),
               "points": torch.from_numpy(pts), "point_labels": torch.ones(n_points)}


def evaluate_domains(backbone: nn.Module, domains, n: int = 32, n_points: int = 3) -> dict[str, float]:
    """Zero-shot mIoU per built-in synthetic domain (test split, point prompts, single mask)."""
    size = int(sam_of(backbone).image_encoder.img_size)
    return {d: float(np.mean(evaluate_items(backbone, domain_items(d, n, n_points, size=size)))) for d in domains}
