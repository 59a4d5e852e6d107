"""The paper's segmentation loss: focal(alpha 0.8, gamma 2) + 10 * dice + MSE(iou_pred, IoU)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.8,
               gamma: float = 2.0) -> torch.Tensor:
    """Per-image focal loss, mean over pixels (shape (B,))."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.exp(-bce)
    loss = alpha * (1 - p_t) ** gamma * bce
    return loss.flatten(1).mean(1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Per-image soft dice loss on the sigmoid (shape (B,))."""
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    return 1 - (2 * inter + smooth) / (prob.sum(1) + target.sum(1) + smooth)


def hard_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of the thresholded prediction (logit > 0) per image; both empty counts as 1."""
    pred = (logits > 0).flatten(1)
    gt = target.flatten(1) > 0.5
    inter = (pred & gt).sum(1).float()
    union = (pred | gt).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def sam_loss(logits: torch.Tensor, iou_pred: torch.Tensor, masks: torch.Tensor,
             dice_weight: float = 10.0) -> torch.Tensor:
    """Loss of the SAMCL reference, summed over the batch.

    ``logits`` (B,1,S,S) at mask resolution, ``iou_pred`` (B,1), ``masks`` (B,S,S) in {0,1}.
    """
    target = masks.unsqueeze(1).to(logits.dtype)
    per_image = focal_loss(logits, target) + dice_weight * dice_loss(logits, target)
    iou = hard_iou(logits.detach(), target)
    per_image = per_image + (iou_pred.reshape(-1) - iou) ** 2
    return per_image.sum()
