"""Pretraining of the small SAM (`sam_small`, docs/design.md §2) on the generic synthetic distribution.

SAM's recipe, simplified for a 2-core CPU: the whole model (image encoder, prompt encoder, mask decoder)
is trained from scratch at 256 px on scenes from scenarios/generic.py, generated on the fly and
deterministic from (seed, sample index). Per image up to `targets_per_image` distinct objects are picked
(each image is encoded once and decoded for all of them, as SAM does) and each is prompted as SAM was
trained: with equal probability 1-3 foreground points drawn uniformly inside the mask (sometimes with one
background point) or the object's box with noise. A single-point prompt asks for SAM's 3 masks and only
the best one is back-propagated; other prompts ask for one mask.

Loss (SAM paper): 20 * focal(gamma 2) + dice on the logits upsampled to S, plus the MSE between the
predicted IoU and the IoU of the thresholded mask. The focal loss weighs foreground pixels by
`focal_alpha` (0.5, balanced: in 6-minute CPU probes it left the all-background phase sooner than the
common 0.25). AdamW with linear warmup then cosine decay.

Two knobs for experiments, off in the shipped recipe: `prompts_per_target` (several independent prompts
per object from one encoding) and `dice_weight`; checkpoint/README.md records what they gave in probes.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.atomic import atomic_path

from scenarios.generic import GenericDataset, generate_scene, pick_targets, sample_inside, scene_seed

IMAGE_SIZE = 256
HELD_OUT_SEED = 1_000_003  # generic evaluation scenes; training uses --seed (default 0)
FOCAL_WEIGHT, DICE_WEIGHT, IOU_WEIGHT = 20.0, 1.0, 1.0
FOCAL_ALPHA, FOCAL_GAMMA = 0.5, 2.0  # alpha: the foreground pixels' weight


@dataclass
class PretrainConfig:
    steps: int = 6400  # the shipped run: 55.7 min on the 2-core CPU with bf16 (checkpoint/README.md)
    batch_size: int = 4
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup: int = 100
    seed: int = 0
    point_prob: float = 0.5  # probability of a point prompt (else a box)
    background_point_prob: float = 0.25
    box_noise: float = 0.1  # box-side fraction (std) of the coordinate noise, capped at 20 px (as SAM)
    image_size: int = IMAGE_SIZE  # 256 for sam_small; tests use smaller models and images
    focal_alpha: float = FOCAL_ALPHA
    dice_weight: float = DICE_WEIGHT  # SAM: 20 x focal + 1 x dice
    targets_per_image: int = 6  # objects decoded (each with its own prompt) per encoded image
    prompts_per_target: int = 1  # independent prompts per object, all decoded from the same encoding
    bf16: bool = False  # bf16 autocast for forward/loss (about 1.6x faster on a CPU with avx512_bf16)


# ---------------------------------------------------------------- model


def _fallback_small_sam() -> nn.Module:
    """The `sam_small` configuration of docs/design.md §2 from the official classes (used only while
    benchmark/backbones.py does not provide it)."""
    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)

    s, dim = IMAGE_SIZE, 128
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=s, patch_size=16, in_chans=3, embed_dim=192, depth=12, num_heads=3, mlp_ratio=4,
            out_chans=dim, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            window_size=6, global_attn_indexes=(2, 5, 8, 11)),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(s // 16, s // 16),
                                     input_image_size=(s, s), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=512, num_heads=8),
            transformer_dim=dim, iou_head_depth=3, iou_head_hidden_dim=128),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def build_small_sam() -> nn.Module:
    """A randomly initialised official `Sam` in the `sam_small` configuration (trainable)."""
    try:
        from benchmark.backbones import build_backbone
    except ImportError:
        sam = _fallback_small_sam()
    else:
        sam = build_backbone("sam_small", checkpoint=None).sam
    for p in sam.parameters():
        p.requires_grad_(True)
    return sam.train()


def _sam_of(model: nn.Module) -> nn.Module:
    return getattr(model, "sam", model)


# ---------------------------------------------------------------- data


def _prompt_for(mask: np.ndarray, cfg: PretrainConfig, rng: np.random.Generator, size: int) -> dict:
    """A SAM-style prompt for one target: 1-3 foreground points (sometimes plus a background point)
    or the noisy box, with the multimask flag SAM uses (one point -> 3 masks)."""
    target: dict[str, Any] = {"points": None, "point_labels": None, "box": None}
    if rng.random() < cfg.point_prob:
        k = int(rng.integers(1, 4))
        pts, labels = sample_inside(mask, k, rng), np.ones(k, np.float32)
        if rng.random() < cfg.background_point_prob and (~mask).any():
            pts = np.concatenate([pts, sample_inside(~mask, 1, rng)])
            labels = np.append(labels, 0.0).astype(np.float32)
        target["points"], target["point_labels"] = torch.from_numpy(pts), torch.from_numpy(labels)
        target["multimask"] = k == 1 and len(labels) == 1
    else:
        ys, xs = np.nonzero(mask)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
        side = np.array([box[2] - box[0], box[3] - box[1]] * 2)
        noise = np.clip(rng.normal(0, 1, 4) * cfg.box_noise * side, -20, 20)
        target["box"] = torch.from_numpy(np.clip(box + noise, 0, size).astype(np.float32))
        target["multimask"] = False
    target["mask"] = torch.from_numpy(mask.astype(np.float32))
    return target


def training_item(seed: int, index: int, cfg: PretrainConfig, size: int = IMAGE_SIZE) -> dict:
    """Scene `index` of the training stream: the image and up to cfg.targets_per_image distinct objects,
    each with cfg.prompts_per_target independent SAM-style prompts (SAM, too, decodes many prompts per
    encoded image: the decoder is cheap next to the encoder, so extra prompts are nearly free signal)."""
    rng = np.random.default_rng(scene_seed(seed, index))
    scene = generate_scene(rng, size)
    masks = pick_targets(scene, rng, cfg.targets_per_image)
    return {"image": torch.from_numpy(scene.image).permute(2, 0, 1).contiguous(),
            "targets": [_prompt_for(m, cfg, rng, size) for m in masks for _ in range(cfg.prompts_per_target)]}


class TrainingStream(torch.utils.data.Dataset):
    """Training samples [start, start + n) of the stream; item i depends only on (seed, start + i)."""

    def __init__(self, cfg: PretrainConfig, start: int, n: int) -> None:
        self.cfg, self.start, self.n = cfg, start, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return training_item(self.cfg.seed, self.start + i, self.cfg, self.cfg.image_size)


def _single_threaded_worker(_: int) -> None:
    """Data workers draw with numpy/OpenCV only; one thread each keeps them off the training threads."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _collate(items: list[dict]) -> list[dict]:
    return items


# ---------------------------------------------------------------- loss


def mask_losses(logits: torch.Tensor, target: torch.Tensor,
                alpha: float = FOCAL_ALPHA) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mask (focal, dice) for logits (..., S, S) against a broadcastable target; shaped logits[:-2]."""
    logits = logits.float()
    t = target.expand_as(logits)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    focal = (alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA).flatten(-2).mean(-1)
    inter = (p * t).flatten(-2).sum(-1)
    dice = 1 - (2 * inter + 1) / (p.flatten(-2).sum(-1) + t.flatten(-2).sum(-1) + 1)
    return focal, dice


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of (logits > 0) with the target, per mask: logits (..., S, S), target broadcastable."""
    pred = logits > 0
    t = target > 0.5
    inter = (pred & t).flatten(-2).sum(-1).float()
    union = (pred | t).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))


def _to(item: dict, device: torch.device | str) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in item.items()}


def _prompt_groups(prompts: list[dict]) -> list[tuple[list[int], tuple | None, torch.Tensor | None]]:
    """Prompts grouped by kind for batched decoding: point prompts (padded to the longest with label -1,
    SAM's "not a point") and box prompts. Returns (indices, points or None, boxes or None)."""
    groups = []
    point_idx = [i for i, it in enumerate(prompts) if it.get("points") is not None]
    box_idx = [i for i, it in enumerate(prompts) if it.get("points") is None]
    if point_idx:
        k = max(len(prompts[i]["points"]) for i in point_idx)
        device = prompts[point_idx[0]]["points"].device
        coords = torch.zeros(len(point_idx), k, 2, device=device)
        labels = torch.full((len(point_idx), k), -1.0, device=device)
        for row, i in enumerate(point_idx):
            n = len(prompts[i]["points"])
            coords[row, :n] = prompts[i]["points"].float()
            labels[row, :n] = prompts[i]["point_labels"].float()
        groups.append((point_idx, (coords, labels), None))
    if box_idx:
        groups.append((box_idx, None, torch.stack([prompts[i]["box"] for i in box_idx])))
    return groups


def decode_batch(sam: nn.Module, embeds: torch.Tensor, prompts: list[dict], image_index: list[int]):
    """All four mask tokens for every prompt (prompt j on embeds[image_index[j]]), decoded a prompt
    kind at a time -> (P,4,L,L), (P,4)."""
    from benchmark.backbones.sam1 import decode_all_masks

    masks, ious = [None] * len(prompts), [None] * len(prompts)
    pe = sam.prompt_encoder
    for idx, points, boxes in _prompt_groups(prompts):
        sparse, dense = pe(points=points, boxes=boxes, masks=None)
        rows = torch.tensor([image_index[i] for i in idx], device=embeds.device)
        m, q = decode_all_masks(sam.mask_decoder, embeds[rows], pe.get_dense_pe(), sparse, dense)
        for row, i in enumerate(idx):
            masks[i], ious[i] = m[row], q[row]
    return torch.stack(masks), torch.stack(ious)


def batch_loss(sam: nn.Module, batch: list[dict],
               focal_alpha: float = FOCAL_ALPHA,
               dice_weight: float = DICE_WEIGHT) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean SAM loss over every target of a list of training scenes (one encoder pass for the images,
    one decoder pass per prompt kind for all their targets)."""
    device = sam.pixel_mean.device
    images = torch.stack([it["image"] for it in batch]).to(device).float()
    targets = [_to(t, device) for it in batch for t in it["targets"]]
    image_index = [i for i, it in enumerate(batch) for _ in it["targets"]]
    embeds = sam.image_encoder(sam.preprocess(images))
    size = images.shape[-1]
    all_low, all_iou = decode_batch(sam, embeds, targets, image_index)  # (P,4,L,L), (P,4)
    multimask = torch.tensor([bool(t["multimask"]) for t in targets], device=device)
    used = torch.ones(all_iou.shape, dtype=torch.bool, device=device)  # as multimask_output: tokens 1-3, else 0
    used[:, 0] = ~multimask
    used[:, 1:] = multimask[:, None]
    # Only the used tokens are upsampled and scored: the full-size loss dominates a CPU step otherwise.
    rows, tokens = used.nonzero(as_tuple=True)
    logits = F.interpolate(all_low[rows, tokens][:, None], (size, size), mode="bilinear",
                           align_corners=False)[:, 0]  # (U,S,S)
    masks = torch.stack([t["mask"] for t in targets])[rows]  # (U,S,S)
    focal_u, dice_u = mask_losses(logits, masks, focal_alpha)

    def per_token(values: torch.Tensor, fill: float) -> torch.Tensor:  # (U,) -> (P,4), `fill` where unused
        return torch.full(used.shape, fill, dtype=values.dtype, device=device).index_put((rows, tokens), values)

    focal, dice = per_token(focal_u, 0.0), per_token(dice_u, 0.0)
    per_mask = per_token(FOCAL_WEIGHT * focal_u + dice_weight * dice_u, float("inf"))
    # SAM: only the best of the multi-mask outputs is back-propagated
    best = per_mask.detach().argmin(1, keepdim=True)
    actual = per_token(mask_iou(logits.detach(), masks), 0.0)  # (P,4)
    iou_mse = ((all_iou.float() - actual) ** 2).masked_fill(~used, 0).sum(1) / used.sum(1)
    loss = per_mask.gather(1, best)[:, 0] + IOU_WEIGHT * iou_mse
    pick = lambda x: float(x.detach().gather(1, best).mean())  # noqa: E731
    logs = {"focal": pick(focal), "dice": pick(dice), "iou_mse": float(iou_mse.detach().mean()),
            "miou": pick(actual)}
    return loss.mean(), logs


# ---------------------------------------------------------------- optimisation and state


def make_optimiser(sam: nn.Module, cfg: PretrainConfig):
    """AdamW (no decay on norms, biases, embeddings) with linear warmup then cosine decay to 1% of lr."""
    decay, no_decay = [], []
    for name, p in sam.named_parameters():
        (no_decay if p.ndim < 2 or "pos" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.999))

    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_state(path: Path, sam: nn.Module, opt, sched, step: int, cfg: PretrainConfig) -> None:
    """Atomically write everything needed to continue the run exactly (model, optimiser, schedule, RNG)."""
    _atomic_torch_save({"model": sam.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "step": step, "config": asdict(cfg), "torch_rng": torch.get_rng_state()}, path)


def load_state(path: Path, sam: nn.Module, opt, sched, cfg: PretrainConfig) -> int:
    """Restore a state written by save_state; returns the next step. The data config must match."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no training state to resume at {path}")
    state = torch.load(path, map_location=sam.pixel_mean.device, weights_only=False)
    saved = PretrainConfig(**state["config"])
    for key in ("batch_size", "seed", "point_prob", "background_point_prob", "box_noise", "image_size",
                "targets_per_image", "prompts_per_target", "focal_alpha", "dice_weight"):
        if getattr(saved, key) != getattr(cfg, key):
            raise ValueError(f"{path}: cannot resume, {key} was {getattr(saved, key)!r}, now {getattr(cfg, key)!r}")
    sam.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"].cpu())
    return int(state["step"])


def train(cfg: PretrainConfig, state_path: Path | None = None, resume: bool = False,
          minutes: float | None = None, save_every: int = 100, workers: int = 0,
          sam: nn.Module | None = None, progress: bool = True,
          log: Callable[[int, dict], None] | None = None, device: str = "cpu") -> tuple[nn.Module, int]:
    """Train `sam` (a fresh small SAM by default) up to cfg.steps or the wall budget; returns (sam, steps done)."""
    torch.manual_seed(cfg.seed)
    sam = (build_small_sam() if sam is None else sam.train()).to(device)
    opt, sched = make_optimiser(sam, cfg)
    step = load_state(state_path, sam, opt, sched, cfg) if resume and state_path is not None else 0
    loader = torch.utils.data.DataLoader(
        TrainingStream(cfg, step * cfg.batch_size, max(0, cfg.steps - step) * cfg.batch_size),
        batch_size=cfg.batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
        worker_init_fn=_single_threaded_worker, prefetch_factor=4 if workers else None)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, initial=step, desc="pretrain sam_small", dynamic_ncols=True, mininterval=5)
    start = time.monotonic()
    autocast_device = "cuda" if str(device).startswith("cuda") else "cpu"
    for batch in loader:
        with torch.autocast(autocast_device, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss, logs = batch_loss(sam, batch, cfg.focal_alpha, cfg.dice_weight)  # logs["miou"]: training-batch IoU of the best mask
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sam.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        logs["loss"], logs["lr"] = float(loss.detach()), sched.get_last_lr()[0]
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.3f}", miou=f"{logs['miou']:.2f}", refresh=False)
        if log is not None:
            log(step, logs)
        out_of_time = minutes is not None and time.monotonic() - start >= minutes * 60
        if state_path is not None and (step % save_every == 0 or step == cfg.steps or out_of_time):
            save_state(state_path, sam, opt, sched, step, cfg)
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    return sam.eval(), step


# ---------------------------------------------------------------- export and evaluation


def export_safetensors(sam: nn.Module, path: Path, max_mb: float = 25.0) -> str:
    """Write the Sam state dict as safetensors (fp32, or fp16 when fp32 would exceed max_mb); returns sha256."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in _sam_of(sam).state_dict().items()}
    if sum(v.numel() * 4 for v in state.values()) > max_mb * 1e6:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"config": "sam_small", "format": "segment_anything.Sam state dict"})
    if path.stat().st_size > max_mb * 1e6:
        raise ValueError(f"{path}: {path.stat().st_size / 1e6:.1f} MB exceeds the {max_mb} MB limit")
    return sha256_of(path)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_small_sam(path: Path) -> nn.Module:
    """The shipped weights in a small Sam (via build_backbone when available)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"small SAM checkpoint not found: {path}")
    try:
        from benchmark.backbones import build_backbone
    except ImportError:
        from safetensors.torch import load_file
        sam = _fallback_small_sam()
        sam.load_state_dict(load_file(str(path)))
        return sam.eval()
    return build_backbone("sam_small", checkpoint=path).sam.eval()


@torch.no_grad()
def evaluate_items(model: nn.Module, items, batch_size: int = 8) -> list[float]:
    """Per-item IoU with the items' point prompts, single-mask output, logits thresholded at 0 at S."""
    sam = _sam_of(model)
    was_training = sam.training
    sam.eval()
    ious: list[float] = []
    batch: list[dict] = []

    def flush() -> None:
        device = sam.pixel_mean.device
        batch[:] = [_to(it, device) for it in batch]
        images = torch.stack([it["image"] for it in batch]).float()
        embeds = sam.image_encoder(sam.preprocess(images))
        low, _ = decode_batch(sam, embeds, batch, list(range(len(batch))))
        logits = F.interpolate(low[:, :1], images.shape[-2:], mode="bilinear", align_corners=False)
        for i, it in enumerate(batch):
            ious.append(float(mask_iou(logits[i, 0], it["mask"])))
        batch.clear()

    for it in items:
        batch.append(it)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    sam.train(was_training)
    return ious


def evaluate_generic(backbone: nn.Module, n: int = 200, seed: int = HELD_OUT_SEED, n_points: int = 3,
                     batch_size: int = 8) -> float:
    """Zero-shot mIoU on `n` held-out generic scenes with `n_points` foreground points (single mask)."""
    size = int(_sam_of(backbone).image_encoder.img_size)
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
    size = int(_sam_of(backbone).image_encoder.img_size)
    return {d: float(np.mean(evaluate_items(backbone, domain_items(d, n, n_points, size=size)))) for d in domains}
