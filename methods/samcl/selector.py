"""SAMCL's Module Selector: an MLP on pooled block features that tells which domain an image is from.

Tap: the output of the last untouched encoder block (SAM ViT-B: block 6; SAM2.1 Hiera-T: trunk
block 5), averaged over the token grid. A :class:`FeatureBuffer` keeps the first ``capacity`` (300)
pooled vectors of every domain, evaluation-only general domains included (they route to vanilla
SAM). After each domain the same MLP (never re-initialised) trains on the whole buffer with SGD
(lr 0.01, 25 epochs, batch 24, cross-entropy), as the reference does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def pooled_tap(tokens: torch.Tensor) -> torch.Tensor:
    """(B, h, w, C) block output -> (B, C) global average over the token grid."""
    if tokens.dim() != 4:
        raise ValueError(f"pooled_tap expects (B, h, w, C) tokens, got {tuple(tokens.shape)}")
    return tokens.mean(dim=(1, 2))


class ModuleSelector(nn.Module):
    """Linear(d,d)+BN -> Linear(d,d/4)+BN+ReLU -> Linear(d/4,d/4)+BN+ReLU -> Linear(d/4,n).

    Names match the released ``Module_Selector.pth`` state_dict.
    """

    def __init__(self, in_dim: int, n_classes: int) -> None:
        super().__init__()
        if in_dim % 4:
            raise ValueError(f"selector input size must be divisible by 4, got {in_dim}")
        h = in_dim // 4
        self.in_dim, self.n_classes = in_dim, n_classes
        self.layer1, self.norm1 = nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim)
        self.layer2, self.norm2 = nn.Linear(in_dim, h), nn.BatchNorm1d(h)
        self.layer3, self.norm3 = nn.Linear(h, h), nn.BatchNorm1d(h)
        self.layer4 = nn.Linear(h, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(self.layer1(x))
        x = F.relu(self.norm2(self.layer2(x)))
        x = F.relu(self.norm3(self.layer3(x)))
        return self.layer4(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class index per row, in eval mode (the mode is restored)."""
        was = self.training
        self.eval()
        try:
            return self(x).argmax(dim=1)
        finally:
            self.train(was)


class FeatureBuffer:
    """Up to ``capacity`` pooled vectors per domain (the first ones seen), kept for the whole stream."""

    def __init__(self, capacity: int = 300) -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.vectors: dict[str, torch.Tensor] = {}

    def add(self, domain: str, vectors: torch.Tensor) -> int:
        """Append vectors (N, d) of ``domain`` until it is full; returns how many were kept."""
        have = self.vectors.get(domain)
        n_have = 0 if have is None else have.shape[0]
        take = vectors[: max(0, self.capacity - n_have)].detach().float().cpu()
        if take.shape[0]:
            self.vectors[domain] = take.clone() if have is None else torch.cat([have, take])
        return int(take.shape[0])

    def full(self, domain: str) -> bool:
        return domain in self.vectors and self.vectors[domain].shape[0] >= self.capacity

    def dataset(self, class_of: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """All buffered vectors and their class labels."""
        xs, ys = [], []
        for name, vecs in self.vectors.items():
            if name not in class_of:
                raise KeyError(f"buffer domain {name!r} has no selector class (known: {sorted(class_of)})")
            xs.append(vecs)
            ys.append(torch.full((vecs.shape[0],), class_of[name], dtype=torch.long))
        if not xs:
            raise ValueError("the feature buffer is empty")
        return torch.cat(xs), torch.cat(ys)

    def nbytes(self) -> dict[str, int]:
        return {k: v.numel() * v.element_size() for k, v in self.vectors.items()}


@dataclass(frozen=True)
class SelectorTraining:
    lr: float = 0.01
    epochs: int = 25
    batch_size: int = 24
    seed: int = 1234


def train_selector(selector: ModuleSelector, buffer: FeatureBuffer, class_of: dict[str, int],
                   cfg: SelectorTraining = SelectorTraining()) -> list[float]:
    """Continue training ``selector`` on the whole buffer; returns the mean loss per epoch.

    A final batch of one vector is skipped (BatchNorm cannot train on it).
    """
    x, y = buffer.dataset(class_of)
    device = next(selector.parameters()).device
    x, y = x.to(device), y.to(device)
    opt = torch.optim.SGD(selector.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    selector.train()
    losses = []
    for _ in range(cfg.epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        total, seen = 0.0, 0
        for start in range(0, x.shape[0], cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            if idx.numel() < 2:
                continue
            loss = F.cross_entropy(selector(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
            seen += idx.numel()
        losses.append(total / max(seen, 1))
    selector.eval()
    return losses


def confusion_matrix(true: torch.Tensor, pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n, n) counts, rows = true class, columns = picked class."""
    idx = true.long() * n_classes + pred.long()
    return torch.bincount(idx, minlength=n_classes * n_classes).view(n_classes, n_classes)
