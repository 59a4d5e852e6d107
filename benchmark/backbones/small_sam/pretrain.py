"""Pretraining of the small SAM (`sam_small`, docs/design.md §2) on the generic synthetic distribution.

The command is ``run_benchmark.py pretrain-small-sam`` (benchmark/cli/pretrain_small_sam.py); the model
is built by benchmark/backbones/small_sam/model.py and scored by evaluate.py beside this module.

SAM's recipe, simplified for a 2-core CPU: the whole model (image encoder, prompt encoder, mask decoder)
is trained from scratch at 256 px on scenes from generic.py (beside this module), generated on the fly and
deterministic from (seed, sample index). Per image up to `targets_per_image` distinct objects are picked
(each image is encoded once and decoded for all of them, as SAM does) and each is prompted as SAM was
trained: with equal probability 1-3 foreground points drawn uniformly inside the mask (sometimes with one
background point) or the object's box with noise. A single-point prompt asks for SAM's 3 masks and only
the best one is back-propagated; other prompts ask for one mask.

Loss (SAM paper): 20 * focal(gamma 2) + dice on the logits upsampled to S, plus the MSE between the
predicted IoU and the IoU of the thresholded mask (focal, dice and IoU from benchmark/core/losses.py,
the focal loss class-balanced as SAM's). The focal loss weighs foreground pixels by
`focal_alpha` (0.5, balanced: in 6-minute CPU probes it left the all-background phase sooner than the
common 0.25). AdamW with linear warmup then cosine decay.

Two knobs for experiments, off in the shipped recipe: `prompts_per_target` (several independent prompts
per object from one encoding) and `dice_weight`; checkpoint/README.md records what they gave in probes.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scenarios.fileio import atomic_path, sha256_file

from benchmark.backbones.small_sam.decoding import decode_batch, sam_of, to_device
from benchmark.backbones.small_sam.generic import generate_scene, pick_targets, sample_inside, scene_seed
from benchmark.backbones.small_sam.model import IMAGE_SIZE, build_sam_small
from benchmark.backbones.small_sam.recipe import (DICE_WEIGHT, FOCAL_ALPHA, FOCAL_GAMMA, FOCAL_WEIGHT,
                                                  IOU_WEIGHT, PretrainConfig)
from benchmark.core.losses import dice_loss, focal_loss, hard_iou


# ---------------------------------------------------------------- model


def build_small_sam() -> nn.Module:
    """A randomly initialised official `Sam` in the `sam_small` configuration (model.py), trainable."""
    sam = build_sam_small()
    for p in sam.parameters():
        p.requires_grad_(True)
    return sam.train()


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


def _masks(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (..., S, S) and a broadcastable target as two (N, S, S) batches for the per-image
    functions of benchmark/core/losses.py."""
    flat = logits.reshape(-1, *logits.shape[-2:])
    return flat, target.expand_as(logits).reshape(flat.shape)


def mask_losses(logits: torch.Tensor, target: torch.Tensor,
                alpha: float = FOCAL_ALPHA) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mask (class-balanced focal, dice) for logits (..., S, S) against a broadcastable target;
    shaped logits[:-2]."""
    x, t = _masks(logits.float(), target)
    p = torch.sigmoid(x)  # shared by both terms (one sigmoid node: the gradients stay as they were)
    focal = focal_loss(x, t, alpha, FOCAL_GAMMA, balanced=True, prob=p)
    return focal.reshape(logits.shape[:-2]), dice_loss(x, t, prob=p).reshape(logits.shape[:-2])


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of (logits > 0) with the target (> 0.5), per mask: logits (..., S, S), target broadcastable."""
    return hard_iou(*_masks(logits, target)).reshape(logits.shape[:-2])


def batch_loss(sam: nn.Module, batch: list[dict],
               focal_alpha: float = FOCAL_ALPHA,
               dice_weight: float = DICE_WEIGHT) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean SAM loss over every target of a list of training scenes (one encoder pass for the images,
    one decoder pass per prompt kind for all their targets)."""
    device = sam.pixel_mean.device
    images = torch.stack([it["image"] for it in batch]).to(device).float()
    targets = [to_device(t, device) for it in batch for t in it["targets"]]
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


# ---------------------------------------------------------------- export


def export_safetensors(sam: nn.Module, path: Path, max_mb: float = 25.0) -> str:
    """Write the Sam state dict as safetensors (fp32, or fp16 when fp32 would exceed max_mb); returns sha256."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in sam_of(sam).state_dict().items()}
    if sum(v.numel() * 4 for v in state.values()) > max_mb * 1e6:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"config": "sam_small", "format": "segment_anything.Sam state dict"})
    if path.stat().st_size > max_mb * 1e6:
        raise ValueError(f"{path}: {path.stat().st_size / 1e6:.1f} MB exceeds the {max_mb} MB limit")
    return sha256_file(path)

