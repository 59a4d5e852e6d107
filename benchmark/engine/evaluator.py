"""The evaluator: the only place that computes scores.

For every domain it asks the method for low-resolution logits, upsamples them to the image size
with ``strategy.upscale`` (the one place that decides how: bilinear, as SAM's post-processing,
unless the run's protocol says nearest; the training loss uses the same) and scores them against the NEAREST-resized masks at that
size (IoU, Dice, MAE at threshold 0.5 on the sigmoid; a domain's score is the mean over images).
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmark.core import distributed
from benchmark.reporting.metrics import SCORES, image_scores



@torch.no_grad()
def evaluate_domains(strategy, datasets: Sequence, *, batch_size: int = 16, num_workers: int = 0,
                     progress=None) -> Dict[str, List[float]]:
    """Mean IoU / Dice / MAE of ``strategy.predict`` on each dataset, in order."""
    from scenarios.stream import collate_samples, to_device

    strategy.model.eval()
    device = strategy.device
    scores: Dict[str, List[float]] = {m: [] for m in SCORES}
    for dataset in datasets:
        # Sums stay on the device until the domain is done (no CPU-GPU wait per batch); float64
        # additions in the same order as Python floats would make them.
        sums = {m: torch.zeros((), dtype=torch.float64, device=device) for m in SCORES}
        count = 0
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                            num_workers=num_workers, collate_fn=collate_samples)
        for batch in loader:
            batch = to_device(batch, device)
            logits = strategy.upscale(strategy.predict(batch))
            per_image = image_scores(logits, batch["mask"])
            for m in SCORES:
                sums[m] += per_image[m].double().sum()
            count += len(batch["mask"])
            if progress is not None:
                progress.update(len(batch["mask"]))
        for m in SCORES:
            scores[m].append(float(sums[m]) / count if count else float("nan"))
    return scores


def stack_rows(rows: List[Dict[str, List[float]]]) -> Dict[str, np.ndarray]:
    """Rows of per-domain scores -> one R matrix per metric, shape (rows, domains)."""
    return {m: np.array([row[m] for row in rows], dtype=np.float64) for m in SCORES}


def evaluate_sharded(strategy, datasets: Sequence, **kwargs) -> Dict[str, List[float]]:
    """``evaluator.evaluate_domains`` over all processes: each scores its shard, then the score
    sums and image counts are all-reduced (the mean over every image, each counted once)."""
    if not distributed.is_distributed():
        return evaluate_domains(strategy, datasets, **kwargs)
    w = distributed.world_size()
    shards = [distributed.shard(ds, distributed.rank(), w) for ds in datasets]
    means = evaluate_domains(strategy, shards, **kwargs)
    device = strategy.device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
    counts = torch.tensor([float(len(s)) for s in shards], dtype=torch.float64)
    sums = torch.tensor([[means[m][i] * counts[i].item() if counts[i] > 0 else 0.0
                          for i in range(len(shards))] for m in SCORES], dtype=torch.float64)
    counts, sums = counts.to(device), sums.to(device)
    torch.distributed.all_reduce(counts)
    torch.distributed.all_reduce(sums)
    counts, sums = counts.cpu(), sums.cpu()
    return {m: [float(sums[k, i] / counts[i]) if counts[i] > 0 else float("nan")
                for i in range(len(shards))] for k, m in enumerate(SCORES)}
