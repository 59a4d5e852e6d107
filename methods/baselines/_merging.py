"""The merging rules of RegCL's comparison (github.com/VDIGPKU/RegCL), as pure functions on tensors.

Each rule follows one RegCL file / function (cited per function); the methods ``regcl``,
``merge_mean``, ``magmax``, ``dop`` and ``replay_merge`` apply them to the parameters of a
per-domain adapter (RegCL merges its modules' parameters, e.g. LoRA's A and B, not dense deltas).
Where RegCL re-merges every kept checkpoint after each domain, the rules here are written as a fold
(a state updated by one domain at a time) that gives the same result with constant storage, except
``rnd_mix_step`` (see there).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor


# ---------------------------------------------------------------------------------- Gram matrices
def gram_update(gram: Tensor | None, count: int, x: Tensor) -> Tuple[Tensor, int]:
    """One more batch of layer inputs ``x`` (..., d) into a running mean Gram matrix (d, d) of
    ``count`` rows so far: RegCL's ``compute_gram`` hook (merging/inner_product.py), which keeps
    ``X^T X / n`` over every token the layer saw."""
    x = x.detach().reshape(-1, x.shape[-1]).float()
    xtx = x.T @ x
    if gram is None:
        return xtx / x.shape[0], x.shape[0]
    return (gram * count + xtx) / (x.shape[0] + count), count + x.shape[0]


def reduce_non_diag(gram: Tensor, alpha: float) -> Tensor:
    """RegMean's regularisation: off-diagonal entries scaled by ``alpha``, the diagonal kept
    (RegCL's ``reduce_non_diag``, merging/inner_product.py; its call in ``regmean_merge`` is
    commented out, i.e. alpha = 1)."""
    weight = torch.full_like(gram, float(alpha))
    weight.fill_diagonal_(1.0)
    return gram * weight


# ---------------------------------------------------------------------------------- RegMean
def regmean(grams: Sequence[Tensor], weights: Sequence[Tensor], alpha: float = 1.0) -> Tensor:
    """RegMean of nn.Linear weights (out, in) with the Gram matrices (in, in) of their inputs:
    ``W* = ((sum_i G_i)^-1 sum_i G_i W_i^T)^T`` (RegCL's ``regmean_merge``), each G_i regularised
    by :func:`reduce_non_diag` first. It minimises ``sum_i ||X_i W^T - X_i W_i^T||^2``."""
    sum_g, sum_gw = regmean_sums(grams, weights, alpha)
    return regmean_solve(sum_g, sum_gw)


def regmean_sums(grams: Sequence[Tensor], weights: Sequence[Tensor], alpha: float = 1.0,
                 start: Tuple[Tensor, Tensor] | None = None) -> Tuple[Tensor, Tensor]:
    """The two running sums RegMean needs, ``sum G_i`` and ``sum G_i W_i^T`` (optionally added to
    ``start``): keeping them instead of every (G_i, W_i) makes progressive RegMean constant in
    storage and gives the same merge."""
    sum_g, sum_gw = start if start is not None else (None, None)
    for gram, weight in zip(grams, weights):
        g = reduce_non_diag(gram, alpha) if alpha != 1.0 else gram
        gw = g @ weight.T.to(g)
        sum_g = g.clone() if sum_g is None else sum_g + g
        sum_gw = gw if sum_gw is None else sum_gw + gw
    return sum_g, sum_gw


def regmean_solve(sum_g: Tensor, sum_gw: Tensor) -> Tensor:
    """``(sum_g^-1 sum_gw)^T``; RegCL takes ``torch.inverse``, here a linear solve (the same
    solution, computed more accurately)."""
    return torch.linalg.solve(sum_g, sum_gw).T


# ---------------------------------------------------------------------------------- MagMax
#: RegCL's scaling of the merged task vector per MagMax variant (``merge_task_vectors`` in
#: merging/magmax_merging.py): max_abs 0.5, rnd_mix 1.0
MAGMAX_SCALE = {"max_abs": 0.5, "rnd_mix": 1.0}


def max_abs(vectors: Sequence[Tensor]) -> Tensor:
    """Per entry, the task vector entry of largest magnitude (a later vector wins a tie):
    RegCL's ``merge_max_abs`` (merging/task_vectors.py), a left fold of :func:`max_abs_step`."""
    out = vectors[0]
    for v in vectors[1:]:
        out = max_abs_step(out, v)
    return out


def max_abs_step(merged: Tensor, new: Tensor) -> Tensor:
    """One step of ``merge_max_abs``: ``where(|new| >= |merged|, new, merged)``."""
    return torch.where(new.abs() >= merged.abs(), new, merged)


def rnd_mix_step(merged: Tensor, new: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """Random mixing as a fold: after the ``n``-th task vector (1-based) each entry is that
    vector's with probability 1/n, else it keeps the previous mix's. Per merge every entry comes
    from each of the n vectors with probability 1/n, as RegCL's ``merge_rnd_mix`` (a fresh
    uniform index per entry, merging/task_vectors.py); unlike RegCL's, successive merges share
    their draws (RegCL re-draws over all kept vectors, which needs every vector kept)."""
    if n <= 1:
        return new.clone()
    take = torch.randint(0, n, new.shape, generator=generator) == n - 1
    return torch.where(take.to(new.device), new, merged)


# ---------------------------------------------------------------------------------- DOP
DOP_DEFAULTS = {"lr": 1e-4, "num_steps": 200, "mgda": True, "ema": True, "ema_beta": 0.99,
                "alpha": 0.5, "svd_epsilon": 1.0, "proj_space": "uv"}
"""RegCL's ``DOPConfig`` defaults (merging/dop.py)."""


def svd_projection(task_vectors: Tensor, epsilon: float) -> Tuple[Tensor, Tensor, Tensor]:
    """(U, S, V) of a batch of task vectors (n, out, in), S zeroed after the first k singular
    values, k the first index where their cumulative share reaches ``epsilon``
    (``torch.searchsorted``): RegCL's ``_task_vector_projection`` (merging/dop.py), which keeps
    ``U[:, :k], S[:k], V[:, :k]``, with its quirk (epsilon 1.0 drops the last direction when the
    cumulative share reaches exactly 1.0); a zero task vector projects to nothing."""
    u, s, vh = torch.linalg.svd(task_vectors, full_matrices=False)
    total = s.sum(dim=-1, keepdim=True)
    ratio = s.cumsum(dim=-1) / torch.where(total == 0, torch.ones_like(total), total)
    k = torch.searchsorted(ratio.contiguous(), torch.full_like(total, float(epsilon)))
    keep = (torch.arange(s.shape[-1], device=s.device) < k) & (total != 0)
    return u, s * keep, vh.transpose(-2, -1)


def projection_loss_grad(delta: Tensor, projection: Tuple[Tensor, Tensor, Tensor],
                         space: str = "uv") -> Tuple[Tensor, Tensor]:
    """Per batch entry ``||S U^T delta||^2`` (u) + ``||delta V S||^2`` (v), RegCL's
    ``projection_loss``, and its gradient in delta (RegCL's autograd, in closed form)."""
    u, s, v = projection
    a = s.unsqueeze(-1) * (u.transpose(-2, -1) @ delta)   # S U^T delta   (n, k, in)
    b = (delta @ v) * s.unsqueeze(-2)                      # delta V S     (n, out, k)
    parts = {"u": ((a * a).sum((-2, -1)), 2 * u @ (s.unsqueeze(-1) * a)),
             "v": ((b * b).sum((-2, -1)), 2 * (b * s.unsqueeze(-2)) @ v.transpose(-2, -1))}
    if space == "uv":
        return parts["u"][0] + parts["v"][0], parts["u"][1] + parts["v"][1]
    return parts[space]


def min_norm_two(g1: Tensor, g2: Tensor) -> Tensor:
    """Per batch entry, the weight gamma of g1 in the min-norm convex combination of two
    gradients (MGDA for two tasks): RegCL's ``_min_norm_solution_for_two`` with its clamps
    (0.999 when <g1, g2> >= |g1|^2, 0.001 when <g1, g2> >= |g2|^2)."""
    v11, v12, v22 = ((x * y).flatten(1).sum(1).double() for x, y in ((g1, g1), (g1, g2), (g2, g2)))
    free = (v22 - v12) / (v11 + v22 - 2 * v12)
    return torch.where(v12 >= v11, torch.full_like(v11, 0.999),
                       torch.where(v12 >= v22, torch.full_like(v11, 0.001), free))


def dop_weights(pretrained: Tensor, current: Tensor, new: Tensor, **options) -> Tensor:
    """DOP merge of a batch of 2-D weights (n, out, in) from two fine-tuned versions, each entry
    independently: RegCL's ``optimize_weight_dop`` (merging/dop.py). Start from their mean; each
    version's task vector ``w_i - pretrained`` gives an SVD projection; ``num_steps`` Adam steps
    (``lr``) on ``sum_i c_i projection_loss(W - w_i)``, with c from MGDA on the loss-normalised
    gradients smoothed by an EMA (start ``[alpha, 1 - alpha]``, factor ``ema_beta``), or fixed
    ``[alpha, 1 - alpha]`` without MGDA. (Batched, the gradients in closed form: the same steps
    as RegCL's per-weight autograd loop, an order of magnitude faster on a CPU.)"""
    unknown = set(options) - set(DOP_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown DOP option(s) {sorted(unknown)}; known: {sorted(DOP_DEFAULTS)}")
    cfg = {**DOP_DEFAULTS, **options}
    dtype = torch.float64 if pretrained.dtype == torch.float64 else torch.float32
    pre = pretrained.detach().to(dtype)
    tuned = [current.detach().to(dtype), new.detach().to(dtype)]
    merged = torch.nn.Parameter((tuned[0] + tuned[1]) / 2)
    projections = [svd_projection(w - pre, cfg["svd_epsilon"]) for w in tuned]
    optimizer = torch.optim.Adam([merged], lr=cfg["lr"])
    n = merged.shape[0]
    fixed = [torch.full((n,), cfg["alpha"], dtype=torch.float64, device=merged.device)]
    fixed.append(1 - fixed[0])
    ema = [c.clone() for c in fixed]
    for _ in range(int(cfg["num_steps"])):
        losses, grads = zip(*(projection_loss_grad(merged.detach() - w, p, cfg["proj_space"])
                              for w, p in zip(tuned, projections)))
        coef = fixed
        if cfg["mgda"]:
            normed = [g / torch.where(l.abs() > 1e-12, l, torch.ones_like(l)).view(-1, 1, 1)
                      for g, l in zip(grads, losses)]
            gamma = min_norm_two(*normed)
            coef = [gamma, 1 - gamma]
            if cfg["ema"]:
                ema = [cfg["ema_beta"] * e + (1 - cfg["ema_beta"]) * c for e, c in zip(ema, coef)]
                coef = ema
        merged.grad = sum(c.to(dtype).view(-1, 1, 1) * g for c, g in zip(coef, grads))
        optimizer.step()
    return merged.detach().to(pretrained.dtype)


def dop_pair(init: Dict[str, Tensor], current: Dict[str, Tensor], new: Dict[str, Tensor],
             **options) -> Dict[str, Tensor]:
    """RegCL's ``merge_pair_tensors_dop``: every 2-D ``.weight`` tensor by :func:`dop_weights`
    (weights of one shape optimised together, each on its own), every other tensor the plain mean
    of the two. ``merge_tensors_dop`` folds the domains in order with it (merged = first;
    merged = dop_pair(init, merged, next))."""
    out = {key: (current[key] + new[key]) / 2 for key in init}
    groups: Dict[Tuple[int, ...], List[str]] = {}
    for key, pre in init.items():
        if pre.is_floating_point() and pre.dim() == 2 and key.endswith(".weight"):
            groups.setdefault(tuple(pre.shape), []).append(key)
    for keys in groups.values():
        stack = [torch.stack([d[k] for k in keys]) for d in (init, current, new)]
        for key, value in zip(keys, dop_weights(*stack, **options)):
            out[key] = value
    return out
