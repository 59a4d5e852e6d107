"""The evaluator: the only place that computes scores.

For every domain it asks the method for low-resolution logits, upsamples them to the image size
with ``strategy.upscale`` (the one place that decides how: bilinear, as SAM's post-processing,
unless the run's protocol says nearest; the training loss uses the same) and scores them against the NEAREST-resized masks at that
size (IoU, Dice, MAE at threshold 0.5 on the sigmoid; a domain's score is the mean over images),
plus the extra metrics a domain declares in the stream YAML (``reporting/domain_metrics.py``).
"""
from __future__ import annotations

from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmark.core import distributed
from benchmark.reporting.domain_metrics import DOMAIN_METRICS, as_uint8_maps, image_stats
from benchmark.reporting.metrics import SCORES, image_scores


@torch.no_grad()
def evaluate_domains(strategy, datasets: Sequence, *, batch_size: int = 16, num_workers: int = 0,
                     progress=None, metrics: Optional[Sequence[Sequence[str]]] = None,
                     samples: Optional[Callable] = None, prefetch: int = 0) -> Dict[str, List[float]]:
    """Mean IoU / Dice / MAE of ``strategy.predict`` on each dataset, in order; ``metrics``: per
    dataset, the extra metrics it declares (``domain_metrics.py``; NaN for the others);
    ``samples(k, dataset)``: a callable per dataset that sees every batch's per-image results
    (``engine/samples.py``); ``prefetch``: batches loaded ahead (``scenarios/prefetch.py``)."""
    metrics = list(metrics) if metrics is not None else [()] * len(datasets)
    strategy.model.eval()
    loading = _Loading(batch_size, num_workers, prefetch)
    sums = [_score_domain(strategy, ds, names, loading, progress,
                          None if samples is None else samples(k, ds))
            for k, (ds, names) in enumerate(zip(datasets, metrics))]
    return _reduce(sums, metrics)


def _reduce(sums: Sequence[tuple], metrics: Sequence[Sequence[str]]) -> Dict[str, List[float]]:
    """Per-domain (sums, count) -> per score, the value of each domain."""
    extra = sorted({n for names in metrics for n in names})
    scores: Dict[str, List[float]] = {m: [] for m in (*SCORES, *extra)}
    for (total, count), names in zip(sums, metrics):
        for m in SCORES:
            scores[m].append(float(total[m]) / count if count else float("nan"))
        for m in extra:
            value = DOMAIN_METRICS[m].reduce(np.asarray(total[m]), count) if m in names else float("nan")
            scores[m].append(value)
    return scores


class _Loading(NamedTuple):
    batch_size: int
    num_workers: int
    prefetch: int

    def batches(self, dataset, device: torch.device):
        """The dataset's batches in order (pinned for a GPU; ``prefetch`` ahead when set)."""
        from scenarios.prefetch import Prefetcher
        from scenarios.stream import collate_samples

        loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                            collate_fn=collate_samples, pin_memory=device.type == "cuda")
        return Prefetcher(loader, device, self.prefetch) if self.prefetch else loader


def _score_domain(strategy, dataset, names: Sequence[str], loading: _Loading, progress,
                  sink: Optional[Callable] = None) -> tuple:
    """Summed per-image scores (and domain-metric statistics) of one dataset, and its image count."""
    from scenarios.stream import to_device

    device = strategy.device
    # Sums stay on the device until the domain is done (no CPU-GPU wait per batch); float64
    # additions in the same order as Python floats would make them.
    sums = {m: torch.zeros((), dtype=torch.float64, device=device) for m in SCORES}
    extra = {m: np.zeros(DOMAIN_METRICS[m].width) for m in names}
    count = 0
    for batch in loading.batches(dataset, device):
        batch = to_device(batch, device)  # nothing to do for a prefetched batch
        logits = strategy.upscale(strategy.predict(batch))
        per_image = image_scores(logits, batch["mask"])
        for m in SCORES:
            sums[m] += per_image[m].double().sum()
        stats = image_stats(names, *as_uint8_maps(logits, batch["mask"])) if names else {}
        for m, values in stats.items():
            extra[m] += values.sum(axis=0)
        if sink is not None:
            sink(batch, logits, per_image, stats)
        count += len(batch["mask"])
        if progress is not None:
            progress.update(len(batch["mask"]))
    return {**sums, **extra}, count


def stack_rows(rows: List[Dict[str, List[float]]]) -> Dict[str, np.ndarray]:
    """Rows of per-domain scores -> one R matrix per score (IoU, Dice, MAE and the domains' extra
    metrics), shape (rows, domains)."""
    return {m: np.array([row[m] for row in rows], dtype=np.float64) for m in rows[0]}


@torch.no_grad()
def evaluate_sharded(strategy, datasets: Sequence, *, batch_size: int = 16, num_workers: int = 0,
                     progress=None, metrics=None, samples=None, prefetch: int = 0) -> Dict[str, List[float]]:
    """``evaluator.evaluate_domains`` over all processes: each scores its shard, then the score
    sums, domain-metric statistics and image counts are all-reduced (every image counted once).
    Per-image ``samples`` need one process (``context.check_options`` refuses them under torchrun)."""
    if not distributed.is_distributed():
        return evaluate_domains(strategy, datasets, batch_size=batch_size, num_workers=num_workers,
                                progress=progress, metrics=metrics, samples=samples, prefetch=prefetch)
    metrics = list(metrics) if metrics is not None else [()] * len(datasets)
    w = distributed.world_size()
    strategy.model.eval()
    loading = _Loading(batch_size, num_workers, prefetch)
    sums = [_score_domain(strategy, distributed.shard(ds, distributed.rank(), w), names, loading, progress)
            for ds, names in zip(datasets, metrics)]
    device = strategy.device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
    out = []
    for (total, count), names in zip(sums, metrics):
        parts = [np.array([count], dtype=np.float64)]
        parts += [np.array([float(total[m])]) for m in SCORES] + [total[m] for m in names]
        flat = torch.from_numpy(np.concatenate(parts)).to(device)
        torch.distributed.all_reduce(flat)
        flat = flat.cpu().numpy()
        merged, start = {m: flat[1 + k] for k, m in enumerate(SCORES)}, 1 + len(SCORES)
        for m in names:
            merged[m] = flat[start:start + len(total[m])]
            start += len(total[m])
        out.append((merged, int(flat[0])))
    return _reduce(out, metrics)
