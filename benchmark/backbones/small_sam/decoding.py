"""Batched decoding of a small SAM for many prompts at once, shared by the pretraining and the evaluation.

Prompts are dicts with ``points`` / ``point_labels`` (point prompts) or ``box`` (box prompts); each
belongs to one image embedding. Every prompt kind is decoded in one pass of the official modules.
"""
from __future__ import annotations

import torch
from torch import nn

from benchmark.backbones.sam1 import decode_all_masks


def sam_of(model: nn.Module) -> nn.Module:
    """The official ``Sam`` of a backbone wrapper, or the model itself."""
    return getattr(model, "sam", model)


def to_device(item: dict, device: torch.device | str) -> dict:
    """The item with its tensors on ``device`` (other values unchanged)."""
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
    masks, ious = [None] * len(prompts), [None] * len(prompts)
    pe = sam.prompt_encoder
    for idx, points, boxes in _prompt_groups(prompts):
        sparse, dense = pe(points=points, boxes=boxes, masks=None)
        rows = torch.tensor([image_index[i] for i in idx], device=embeds.device)
        m, q = decode_all_masks(sam.mask_decoder, embeds[rows], pe.get_dense_pe(), sparse, dense)
        for row, i in enumerate(idx):
            masks[i], ious[i] = m[row], q[row]
    return torch.stack(masks), torch.stack(ious)
