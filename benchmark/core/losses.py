"""Mask losses and thresholded mask scores: the one home of focal, dice and hard IoU.

Conventions shared by every function: per-mask values for a batch ``(B, ...)`` are reduced over
every dimension but the first, giving shape ``(B,)``. A pixel is predicted foreground when its logit
is > 0 (sigmoid > 0.5); a target pixel is foreground when it is > 0.5.

Users: :func:`sam_loss` (the paper's loss, every method's training), the small SAM's pretraining
(benchmark/backbones/small_sam/pretrain.py: the SAM paper's 20 x class-balanced focal + dice) and
the benchmark's scores (``benchmark.reporting.metrics.image_scores``, via :func:`hard_scores`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.8,
               gamma: float = 2.0, balanced: bool = False,
               prob: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image focal loss, mean over pixels (shape (B,)).

    ``balanced=False`` (the SAMCL reference, :func:`sam_loss`): ``alpha`` weighs every pixel and
    ``p_t = exp(-bce)``. ``balanced=True`` (RetinaNet / SAM, the small SAM's pretraining): ``alpha``
    weighs the foreground pixels and ``1 - alpha`` the background ones, ``p_t`` from the sigmoid.
    The two are kept as they were written (same operations in the same order), so neither the
    benchmark's losses nor the pretraining's change by a bit. ``prob``: ``sigmoid(logits)`` when the
    caller has it already (balanced only; sharing it with :func:`dice_loss` keeps one sigmoid in
    the autograd graph, which the pretraining's gradients were computed with).
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if balanced:
        p = torch.sigmoid(logits) if prob is None else prob
        p_t = p * target + (1 - p) * (1 - target)
        alpha_t = alpha * target + (1 - alpha) * (1 - target)
        loss = alpha_t * bce * (1 - p_t) ** gamma
    else:
        p_t = torch.exp(-bce)
        loss = alpha * (1 - p_t) ** gamma * bce
    return loss.flatten(1).mean(1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0,
              prob: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image soft dice loss on the sigmoid (shape (B,)); ``prob``: the sigmoid, if computed."""
    prob = (torch.sigmoid(logits) if prob is None else prob).flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    return 1 - (2 * inter + smooth) / (prob.sum(1) + target.sum(1) + smooth)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, and 1 where den is 0 (both sets empty: a perfect answer)."""
    return torch.where(den > 0, num / den.clamp(min=1), torch.ones_like(num))


def _hard_counts(logits: torch.Tensor, target: torch.Tensor):
    """(pred, gt) as (B, N) bools and their intersection and union sizes as float (B,)."""
    pred = (logits > 0).flatten(1)
    gt = target.flatten(1) > 0.5
    return pred, gt, (pred & gt).sum(1).float(), (pred | gt).sum(1).float()


def hard_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of the thresholded prediction (logit > 0) per image; both empty counts as 1."""
    _, _, inter, union = _hard_counts(logits, target)
    return _ratio(inter, union)


def hard_scores(logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """IoU, Dice (F1) and MAE (fraction of wrong pixels) of the thresholded prediction per image,
    each float32 (B,). Both empty: IoU = Dice = 1; only one empty: 0 (from the formulas)."""
    pred, gt, inter, union = _hard_counts(logits, target)
    total = pred.sum(1).float() + gt.sum(1).float()
    return {"iou": _ratio(inter, union), "dice": _ratio(2 * inter, total),
            "mae": (pred != gt).float().mean(1)}


def reference_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The SAMCL reference's IoU target (its ``calc_iou``) per image: the prediction is
    ``logits >= 0.5`` (the raw logits, not the sigmoid: a quirk; the scores use logit > 0), and
    IoU = intersection / (union + 1e-7), so an empty prediction of an empty mask gives 0."""
    pred = (logits >= 0.5).flatten(1).to(logits.dtype)
    gt = target.flatten(1)
    inter = (pred * gt).sum(1)
    union = pred.sum(1) + gt.sum(1) - inter
    return inter / (union + 1e-7)


#: the IoU terms ``sam_loss`` knows (``iou_loss``)
IOU_LOSSES = ("project", "reference")


def sam_loss(logits: torch.Tensor, iou_pred: torch.Tensor, masks: torch.Tensor,
             dice_weight: float = 10.0, iou_loss: str = "project") -> torch.Tensor:
    """Loss of the SAMCL reference, summed over the batch: the paper's focal(alpha 0.8, gamma 2)
    + 10 x dice + an IoU term.

    ``logits`` (B,1,S,S) at mask resolution, ``iou_pred`` (B,1), ``masks`` (B,S,S) in {0,1}.
    ``iou_loss``: ``project`` (the default): (iou_pred - hard IoU)^2 per image, the hard IoU of
    logit > 0 with both empty counting 1; ``reference`` (the protocol ``samcl_reference``): the
    reference's term, (iou_pred - :func:`reference_iou`)^2 / B per image.
    """
    target = masks.unsqueeze(1).to(logits.dtype)
    per_image = focal_loss(logits, target) + dice_weight * dice_loss(logits, target)
    if iou_loss == "project":
        iou = hard_iou(logits.detach(), target)
        per_image = per_image + (iou_pred.reshape(-1) - iou) ** 2
    elif iou_loss == "reference":
        iou = reference_iou(logits.detach(), target)
        per_image = per_image + (iou_pred.reshape(-1) - iou) ** 2 / logits.shape[0]
    else:
        raise ValueError(f"iou_loss must be one of {', '.join(IOU_LOSSES)}, got {iou_loss!r}")
    return per_image.sum()
