"""The runner: drives each (method, seed) over the domain stream and writes one record per run.

Row 0 of every score matrix is the method before any training (zero-shot); row t is after training
the t-th domain. Every row evaluates every domain: trained, not yet trained and evaluation-only.
"""
from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from benchmark.config import RunConfig, method_hparams

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def resolve_methods(cfg: RunConfig) -> List[str]:
    from methods.registry import import_method_module, list_methods

    for module in cfg.method_modules:
        import_method_module(module)
    known = list_methods()
    if cfg.methods == "all":
        return known
    unknown = [m for m in cfg.methods if m not in known]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return list(cfg.methods)


@dataclass
class RunContext:
    """What all runs of one benchmark invocation share: backbone, stream, cache."""
    cfg: RunConfig
    device: torch.device
    backbone: torch.nn.Module          # pristine; each run trains on a deep copy
    stream: object                     # scenarios.stream.DomainStream
    stream_cfg: object
    cache: object                      # benchmark.feature_cache.FeatureCache
    views: Dict[str, tuple]            # tap -> (train views, test views, general views)
    cache_seconds: float = 0.0

    def views_at(self, tap: str):
        if tap not in self.views:
            start = time.perf_counter()
            train = [self.cache.view(self.backbone, ds, tap) for ds in self.stream.train_datasets]
            test = [self.cache.view(self.backbone, ds, tap) for ds in self.stream.test_datasets]
            general = [self.cache.view(self.backbone, ds, tap) for ds in self.stream.general_datasets]
            self.views[tap] = (train, test, general)
            self.cache_seconds += time.perf_counter() - start
        return self.views[tap]


def prepare(cfg: RunConfig) -> RunContext:
    from benchmark.backbones import build_backbone
    from benchmark.feature_cache import FeatureCache
    from scenarios.config import load_stream_config
    from scenarios.stream import build_domain_stream

    device = resolve_device(cfg.device)
    stream_cfg = load_stream_config(cfg.stream, cfg.stream_overrides)
    stream = build_domain_stream(stream_cfg)
    backbone = build_backbone(cfg.backbone, checkpoint=cfg.checkpoint, device=str(device))
    if backbone.image_size != stream_cfg.image_size:
        raise ValueError(f"stream {stream_cfg.name!r} has image_size {stream_cfg.image_size} but "
                         f"backbone {cfg.backbone!r} expects {backbone.image_size}; set "
                         f"stream_overrides.image_size or choose another backbone")
    cache = FeatureCache(cfg.cache_dir, dtype=cfg.cache_dtype, progress=cfg.progress)
    return RunContext(cfg=cfg, device=device, backbone=backbone, stream=stream,
                      stream_cfg=stream_cfg, cache=cache, views={})


def run_one(ctx: RunContext, method_name: str, seed: int, progress: bool = True):
    """Run one method with one seed over the stream; returns the RunRecord (not yet written)."""
    from tqdm.auto import tqdm

    from benchmark.evaluator import evaluate_domains, stack_rows
    from benchmark.records import RunRecord
    from benchmark.storage import StorageLedger
    from methods.registry import get_method
    from scenarios.stream import to_avalanche

    cfg, stream = ctx.cfg, ctx.stream
    cls = get_method(method_name)
    known = cls.resolve_hparams({})
    overrides = method_hparams(cfg, method_name, known)
    seed_everything(seed)
    start_total = time.perf_counter()
    train_views, test_views, general_views = ctx.views_at(cls.tap)
    backbone = copy.deepcopy(ctx.backbone)
    strategy = cls(backbone=backbone, domain_names=list(stream.domain_names), n_trained=stream.trained,
                   hparams=overrides, device=str(ctx.device), seed=seed)
    strategy.model.to(ctx.device)
    strategy.general_datasets = general_views
    scenario = to_avalanche(train_views, test_views)
    n_eval = sum(len(ds) for ds in test_views)
    bar = tqdm(total=(stream.trained + 1) * n_eval + sum(len(d) for d in train_views),
               desc=f"{method_name} seed {seed}", unit="img", disable=not progress, leave=False)

    def evaluate() -> Dict[str, List[float]]:
        t0 = time.perf_counter()
        row = evaluate_domains(strategy, test_views, batch_size=int(strategy.hp["eval_batch_size"]),
                               num_workers=cfg.num_workers, progress=bar)
        eval_times.append(time.perf_counter() - t0)
        return row

    eval_times: List[float] = []
    train_times: List[float] = []
    ledger = StorageLedger()
    rows = [evaluate()]
    for t, experience in enumerate(scenario.train_stream):
        t0 = time.perf_counter()
        strategy.learn_domain(experience, t, num_workers=cfg.num_workers)
        train_times.append(time.perf_counter() - t0)
        bar.update(len(train_views[t]))
        ledger.record(stream.domain_names[t], strategy.storage())
        rows.append(evaluate())
    bar.close()
    matrices = {k: v.tolist() for k, v in stack_rows(rows).items()}
    timing = {"cache_build": ctx.cache_seconds, "train": train_times, "eval": eval_times,
              "train_total": float(sum(train_times)), "total": time.perf_counter() - start_total}
    extra = dict(strategy.extra_record())
    extra["loss_history"] = list(strategy.loss_history)
    return RunRecord.create(
        method=method_name, backbone=cfg.backbone,
        stream={"name": ctx.stream_cfg.name, "domains": list(stream.domain_names),
                "trained": stream.trained, "eval_only": list(stream.domain_names[stream.trained:])},
        seed=seed, matrices=matrices, device=ctx.device,
        repo_dir=Path(__file__).resolve().parents[1],
        config=cfg.to_dict(), hparams=strategy.hp, storage=ledger.to_dict(), timing=timing,
        extra=extra)


def run_benchmark(cfg: RunConfig, progress: Optional[bool] = None) -> List[Path]:
    """Run every (method, seed) of ``cfg``; write one record each into ``cfg.output``."""
    from benchmark.records import write_record

    progress = cfg.progress if progress is None else progress
    methods = resolve_methods(cfg)
    ctx = prepare(cfg)
    written = []
    for method_name in methods:
        for seed in cfg.seeds:
            record = run_one(ctx, method_name, seed, progress=progress)
            path = write_record(record, cfg.output)
            written.append(path)
            iou = np.asarray(record.matrices["iou"], dtype=float)
            T = stream_trained = ctx.stream.trained
            print(f"  {method_name:<18s} seed {seed}: final mIoU {np.nanmean(iou[T, :stream_trained]):.3f}"
                  f"  ({record.timing['total']:.1f} s)  -> {path}", flush=True)
    return written
