"""Segmentation scores per image and continual-learning metrics from score matrices.

Pure functions, no state. Two parts:

* ``image_scores``: IoU, Dice (F1) and MAE of each image at threshold 0.5 on the sigmoid.
* ``summarize`` (and the single metrics): from a score matrix ``R`` of shape ``(T + 1, N)``.

Score-matrix layout (0-based indices everywhere in this module)::

    R[0, j]   zero-shot score on domain j (before any training)
    R[t, j]   score on domain j after training the t-th trained domain, t = 1..T
              (so row d + 1 is "right after training domain d")
    columns   N domains: 0..T-1 are trained, in stream order; T..N-1 are evaluation-only

Two families of metrics, named so they cannot be confused:

SAMCL's (arXiv 2412.05012), in its paper's 1-based notation ``R[i, i]`` = score on domain i
right after training it:

* ``AA``        = mean_{d<T} R[T, d]
* ``FM_samcl``  = sum_{d<T} (R[d+1, d] - R[T, d]) / T  (no max; divides by T, includes the last
  domain whose term is 0, so it equals -(T-1)/T * BWT)
* ``FT_samcl``  = mean_{d=1..T-1} R[d, d]  (raw score on the next, not yet trained domain, right
  after training the previous one; not relative to anything)

The literature's:

* ``BWT``        (Lopez-Paz & Ranzato 2017) = mean_{d<T-1} R[T, d] - R[d+1, d]
* ``forgetting`` (Chaudhry et al. 2018)      = mean_{d<T-1} max_{l=d+1..T-1} R[l, d] - R[T, d]
  (best score seen after training d, before the last domain, minus the final score)
* ``FWT``        (Lopez-Paz & Ranzato 2017) = mean_{d=1..T-1} R[d, d] - R[0, d]  (b = zero-shot row)

Plus ``zero_shot`` = mean_{d<T} R[0, d] and, for the evaluation-only domains (left out of every
average above), ``eval_only_final`` = mean_{j>=T} R[T, j] and ``eval_only_change`` =
mean_{j>=T} R[T, j] - R[0, j].

Undefined values are NaN: with T = 1, FT/BWT/forgetting/FWT have no terms (FM is 0); with no
evaluation-only domain, the ``eval_only_*`` values are NaN.

Lower-is-better scores (MAE): every formula is applied to the raw matrix unchanged and only its
direction flips (e.g. for MAE, ``FM_samcl > 0`` means the final error is *lower* than right after
training, i.e. no forgetting, so FM's good direction becomes "higher"; ``BWT > 0`` means the error
grew, so BWT's good direction becomes "lower"). The one exception is ``forgetting``: Chaudhry's
"best earlier score" is the max for higher-is-better scores and the min for lower-is-better ones,
so for MAE it is mean_d R[T, d] - min_l R[l, d]; it is >= 0 and lower is better for every score.
``metric_direction(name, higher_is_better)`` gives the direction that applies.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from torch import Tensor

from benchmark.core.losses import hard_scores

SCORES = ("iou", "dice", "mae")
SCORE_HIGHER_IS_BETTER = {"iou": True, "dice": True, "mae": False}

HIGHER = "higher"
LOWER = "lower"

# name -> (description, direction when the score itself is higher-is-better, e.g. IoU/Dice)
METRIC_INFO: dict[str, tuple[str, str]] = {
    "AA": ("SAMCL average accuracy: mean final score on the trained domains", HIGHER),
    "FM_samcl": ("SAMCL forgetting measure: sum_d (score right after training d - final score) / T",
                 LOWER),
    "FT_samcl": ("SAMCL forward transfer: mean raw score on the next, untrained domain", HIGHER),
    "BWT": ("backward transfer (Lopez-Paz & Ranzato): mean final minus just-trained score, "
            "last domain excluded", HIGHER),
    "forgetting": ("forgetting (Chaudhry): mean best score after training minus final score, "
                   "last domain excluded (best = min for lower-is-better scores)", LOWER),
    "FWT": ("forward transfer (Lopez-Paz & Ranzato): mean score before training a domain minus "
            "its zero-shot score", HIGHER),
    "zero_shot": ("mean zero-shot score (row 0) on the trained domains", HIGHER),
    "eval_only_final": ("mean final score on the evaluation-only domains", HIGHER),
    "eval_only_change": ("mean final minus zero-shot score on the evaluation-only domains", HIGHER),
}

# Metrics whose good direction does not flip for lower-is-better scores (see module docstring).
_DIRECTION_FIXED = frozenset({"forgetting"})


def metric_direction(name: str, higher_is_better: bool = True) -> str:
    """``"higher"`` or ``"lower"``: which way is better for metric ``name`` on such a score."""
    if name not in METRIC_INFO:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRIC_INFO)}")
    direction = METRIC_INFO[name][1]
    if higher_is_better or name in _DIRECTION_FIXED:
        return direction
    return LOWER if direction == HIGHER else HIGHER


# --------------------------------------------------------------------------------------------
# Per-image scores
# --------------------------------------------------------------------------------------------

def image_scores(logits: Tensor, masks: Tensor) -> dict[str, Tensor]:
    """IoU, Dice (F1) and MAE per image, each a float32 tensor of shape (B,).

    The prediction is ``sigmoid(logits) > 0.5``, i.e. ``logits > 0``; the ground truth is
    ``masks > 0.5``. MAE is the fraction of wrong pixels. Convention for empty sets: when both the
    prediction and the mask are empty, IoU = Dice = 1 (a perfect answer); when only one of them is
    empty, IoU = Dice = 0 (this follows from the formulas). Computed by
    ``benchmark.core.losses.hard_scores``, whose IoU is the one the training loss uses.
    """
    if logits.dim() == 4:
        if logits.shape[1] != 1:
            raise ValueError(f"logits must be (B,1,S,S) or (B,S,S), got {tuple(logits.shape)}")
        logits = logits[:, 0]
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if logits.dim() != 3 or logits.shape != masks.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and masks {tuple(masks.shape)} must both "
                         "be (B,S,S) (logits may also be (B,1,S,S))")
    return hard_scores(logits.detach(), masks.detach())


# --------------------------------------------------------------------------------------------
# Metrics from a score matrix
# --------------------------------------------------------------------------------------------

def _check(R, trained: int) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2:
        raise ValueError(f"score matrix must be 2-D (T+1, N), got shape {R.shape}")
    if not isinstance(trained, (int, np.integer)) or trained < 1:
        raise ValueError(f"trained must be a positive int, got {trained!r}")
    if R.shape[0] != trained + 1:
        raise ValueError(f"score matrix has {R.shape[0]} rows, expected trained + 1 = {trained + 1}")
    if R.shape[1] < trained:
        raise ValueError(f"score matrix has {R.shape[1]} columns, fewer than trained = {trained}")
    return R


def _mean(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.mean()) if values.size else float("nan")


def average_accuracy(R, trained: int) -> float:
    R = _check(R, trained)
    return _mean(R[trained, :trained])


def fm_samcl(R, trained: int) -> float:
    R = _check(R, trained)
    T = trained
    return float(sum(R[d + 1, d] - R[T, d] for d in range(T)) / T)


def ft_samcl(R, trained: int) -> float:
    R = _check(R, trained)
    return _mean([R[d, d] for d in range(1, trained)])


def bwt(R, trained: int) -> float:
    R = _check(R, trained)
    T = trained
    return _mean([R[T, d] - R[d + 1, d] for d in range(T - 1)])


def forgetting(R, trained: int, higher_is_better: bool = True) -> float:
    R = _check(R, trained)
    T = trained
    if higher_is_better:
        terms = [R[d + 1:T, d].max() - R[T, d] for d in range(T - 1)]
    else:
        terms = [R[T, d] - R[d + 1:T, d].min() for d in range(T - 1)]
    return _mean(terms)


def fwt(R, trained: int) -> float:
    R = _check(R, trained)
    return _mean([R[d, d] - R[0, d] for d in range(1, trained)])


def zero_shot(R, trained: int) -> float:
    R = _check(R, trained)
    return _mean(R[0, :trained])


def eval_only_final(R, trained: int) -> float:
    R = _check(R, trained)
    return _mean(R[trained, trained:])


def eval_only_change(R, trained: int) -> float:
    R = _check(R, trained)
    return _mean(R[trained, trained:] - R[0, trained:])


_FUNCTIONS: dict[str, Callable[..., float]] = {
    "AA": average_accuracy,
    "FM_samcl": fm_samcl,
    "FT_samcl": ft_samcl,
    "BWT": bwt,
    "FWT": fwt,
    "zero_shot": zero_shot,
    "eval_only_final": eval_only_final,
    "eval_only_change": eval_only_change,
}


def summarize(R, trained: int, higher_is_better: bool = True) -> dict[str, float]:
    """Every metric of ``METRIC_INFO`` on one score matrix (NaN where undefined)."""
    R = _check(R, trained)
    out = {name: fn(R, trained) for name, fn in _FUNCTIONS.items()}
    out["forgetting"] = forgetting(R, trained, higher_is_better)
    return {name: out[name] for name in METRIC_INFO}
