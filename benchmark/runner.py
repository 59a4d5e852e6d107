"""The runner: drives each (method, seed) over the domain stream and writes one record per run.

Row 0 of every score matrix is the method before any training (zero-shot); row t is after training
the t-th domain. Every row evaluates every domain: trained, not yet trained and evaluation-only.

A run saves its state at each domain boundary (benchmark/resume.py) and continues from there when
started again with the same command; under torchrun it trains and evaluates on every process and
only rank 0 writes (benchmark/distributed.py). See docs/scaling.md.
"""
from __future__ import annotations

import copy
import logging
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from benchmark import distributed
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


def configure_determinism(on: bool) -> None:
    """``--deterministic``: deterministic algorithms where torch has them (warns where it has not,
    e.g. some CUDA backward passes); cuDNN autotuning off."""
    if not on:
        return
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def run_id_of(cfg: RunConfig, stream_cfg, method_name: str, seed: int, hparams: dict) -> str:
    from benchmark.resume import compute_run_id

    return compute_run_id(method=method_name, backbone=cfg.backbone, checkpoint=cfg.checkpoint,
                          stream=stream_cfg.to_dict(), seed=seed, hparams=hparams,
                          precision=cfg.precision)


def tensorboard_writer(cfg: RunConfig, name: str):
    """A SummaryWriter under ``cfg.tensorboard`` (rank 0 only), or None."""
    if not cfg.tensorboard or not distributed.is_main():
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("config field 'tensorboard' needs the tensorboard package "
                         "(pip install tensorboard)") from None
    return SummaryWriter(log_dir=str(Path(cfg.tensorboard) / name))


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
            with distributed.main_process_first():  # rank 0 builds missing entries, then the rest read
                self._build_views(tap)
            self.cache_seconds += time.perf_counter() - start
        return self.views[tap]

    def _build_views(self, tap: str) -> None:
            train = [self.cache.view(self.backbone, ds, tap) for ds in self.stream.train_datasets]
            test = [self.cache.view(self.backbone, ds, tap) for ds in self.stream.test_datasets]
            general = [self.cache.view(self.backbone, ds, tap) for ds in self.stream.general_datasets]
            self.views[tap] = (train, test, general)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matrix products natively (CUDA: Ampere or newer; CPU: the
    oneDNN check for avx512_bf16 / AMX). bf16 autocast works everywhere, but emulated it is slow."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private oneDNN probe: absent in some builds
        return False


def prepare(cfg: RunConfig) -> RunContext:
    from benchmark.backbones import build_backbone
    from benchmark.feature_cache import FeatureCache
    from scenarios.config import load_stream_config
    from scenarios.stream import build_domain_stream

    device = distributed.setup(resolve_device(cfg.device))
    configure_determinism(cfg.deterministic)
    if cfg.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise ValueError("config field 'tensorboard' needs the tensorboard package "
                             "(pip install tensorboard)")
    if cfg.precision == "bf16" and not native_bf16(device):
        warnings.warn(f"precision=bf16 on {device}: no native bf16 (a CPU needs avx512_bf16 or AMX, "
                      f"a GPU Ampere or newer), so bf16 is emulated and likely slower than fp32")
    stream_cfg = load_stream_config(cfg.stream, cfg.stream_overrides)
    with distributed.main_process_first():  # a synthetic stream is generated by rank 0 only
        stream = build_domain_stream(stream_cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random weights (checkpoint none) are the same in every process
        backbone = build_backbone(cfg.backbone, checkpoint=cfg.checkpoint, device=str(device))
    if backbone.image_size != stream_cfg.image_size:
        raise ValueError(f"stream {stream_cfg.name!r} has image_size {stream_cfg.image_size} but "
                         f"backbone {cfg.backbone!r} expects {backbone.image_size}; set "
                         f"stream_overrides.image_size or choose another backbone")
    cache = FeatureCache(cfg.cache_dir, dtype=cfg.cache_dtype, progress=cfg.progress)
    return RunContext(cfg=cfg, device=device, backbone=backbone, stream=stream,
                      stream_cfg=stream_cfg, cache=cache, views={})


def run_one(ctx: RunContext, method_name: str, seed: int, progress: bool = True):
    """Run one method with one seed over the stream; returns the RunRecord (not yet written).

    Resumes from ``<output>/.state/<run id>/`` when a killed run left its state there."""
    from tqdm.auto import tqdm

    from benchmark import resume
    from benchmark.evaluator import stack_rows
    from benchmark.records import RunRecord
    from benchmark.storage import StorageLedger
    from methods.registry import get_method
    from scenarios.stream import to_avalanche

    cfg, stream = ctx.cfg, ctx.stream
    cls = get_method(method_name)
    known = cls.resolve_hparams({})
    overrides = method_hparams(cfg, method_name, known)
    run_id = run_id_of(cfg, ctx.stream_cfg, method_name, seed, cls.resolve_hparams(overrides))
    state_dir = resume.state_dir(cfg.output, run_id)
    start_total = time.perf_counter()
    train_views, test_views, general_views = ctx.views_at(
        cls.tap_for(cfg.backbone, cls.resolve_hparams(overrides)))
    seed_everything(seed)  # after the cache: whether it was built must not change the run
    backbone = copy.deepcopy(ctx.backbone)
    strategy = cls(backbone=backbone, domain_names=list(stream.domain_names), n_trained=stream.trained,
                   hparams=overrides, device=str(ctx.device), seed=seed)
    strategy.model.to(ctx.device)
    strategy.general_datasets = general_views
    strategy.enable_precision(cfg.precision, cfg.channels_last)
    scenario = to_avalanche(train_views, test_views)
    experiences = list(scenario.train_stream)
    n_eval = sum(len(ds) for ds in test_views)
    bar = tqdm(total=(stream.trained + 1) * n_eval + sum(len(d) for d in train_views),
               desc=f"{method_name} seed {seed}", unit="img",
               disable=not progress or not distributed.is_main(), leave=False)
    writer = tensorboard_writer(cfg, f"{method_name}__{cfg.backbone}__seed{seed}__{run_id[:8]}")

    def evaluate() -> Dict[str, List[float]]:
        t0 = time.perf_counter()
        row = distributed.evaluate_sharded(strategy, test_views,
                                           batch_size=int(strategy.hp["eval_batch_size"]),
                                           num_workers=cfg.num_workers, progress=bar)
        eval_times.append(time.perf_counter() - t0)
        if writer is not None:
            for metric, values in row.items():
                for name, value in zip(stream.domain_names, values):
                    writer.add_scalar(f"R_{metric}/{name}", value, len(rows))
        return row

    eval_times: List[float] = []
    train_times: List[float] = []
    rows: List[Dict[str, List[float]]] = []
    ledger = StorageLedger()
    done, elapsed_before = 0, 0.0
    state = resume.load_state(state_dir) if cfg.resume else None
    if state is not None:
        strategy.load_state_dict(state["strategy"])
        rows, done = list(state["rows"]), int(state["domain"])
        ledger = StorageLedger.from_dict(state["ledger"])
        train_times, eval_times = list(state["train_times"]), list(state["eval_times"])
        elapsed_before = float(state["elapsed"])
        strategy.on_resume(experiences[:done])
        resume.set_rng_state(state["rng"])
        bar.update((done + 1) * n_eval + sum(len(train_views[t]) for t in range(done)))
        if distributed.is_main():
            print(f"  {method_name} seed {seed}: resuming after domain {done}/{stream.trained} "
                  f"({state_dir})", flush=True)
    else:
        rows.append(evaluate())
    for t in range(done, stream.trained):
        t0 = time.perf_counter()
        n_losses = len(strategy.loss_history)
        strategy.learn_domain(experiences[t], t, num_workers=cfg.num_workers)
        train_times.append(time.perf_counter() - t0)
        bar.update(len(train_views[t]))
        ledger.record(stream.domain_names[t], strategy.storage())
        rows.append(evaluate())
        if writer is not None:
            for k, loss in enumerate(strategy.loss_history[n_losses:], start=n_losses):
                writer.add_scalar("loss/epoch", loss, k)
        if t + 1 < stream.trained and distributed.is_main():
            resume.save_state(state_dir, {
                "run_id": run_id, "domain": t + 1, "rows": rows, "ledger": ledger.to_dict(),
                "train_times": train_times, "eval_times": eval_times,
                "elapsed": elapsed_before + time.perf_counter() - start_total,
                "strategy": strategy.state_dict(), "rng": resume.rng_state()})
    bar.close()
    if writer is not None:
        writer.close()
    matrices = {k: v.tolist() for k, v in stack_rows(rows).items()}
    epochs = int(strategy.hp["epochs"])
    timing = {"cache_build": ctx.cache_seconds, "train": train_times, "eval": eval_times,
              "train_total": float(sum(train_times)),
              "total": elapsed_before + time.perf_counter() - start_total,
              # for images per second: training images x epochs per domain, images per evaluation
              "train_images": [len(train_views[t]) * epochs for t in range(stream.trained)],
              "eval_images": n_eval}
    extra = dict(strategy.extra_record())
    extra["loss_history"] = list(strategy.loss_history)
    extra["run_id"] = run_id
    extra["world_size"] = distributed.world_size()
    extra["backend"] = distributed.backend()
    return RunRecord.create(
        method=method_name, backbone=cfg.backbone,
        stream={"name": ctx.stream_cfg.name, "domains": list(stream.domain_names),
                "trained": stream.trained, "eval_only": list(stream.domain_names[stream.trained:])},
        seed=seed, matrices=matrices, device=ctx.device,
        repo_dir=Path(__file__).resolve().parents[1],
        config=cfg.to_dict(), hparams=strategy.hp, storage=ledger.to_dict(), timing=timing,
        extra=extra)


def finish_run(ctx: RunContext, record) -> Optional[Path]:
    """Rank 0 writes the record, then removes the run's saved state; returns the record's path."""
    from benchmark import resume
    from benchmark.records import write_record

    path = None
    if distributed.is_main():
        path = write_record(record, ctx.cfg.output)
        resume.clear_state(resume.state_dir(ctx.cfg.output, record.extra["run_id"]))
        iou = np.asarray(record.matrices["iou"], dtype=float)
        T = ctx.stream.trained
        print(f"  {record.method:<18s} seed {record.seed}: final mIoU {np.nanmean(iou[T, :T]):.3f}"
              f"  ({record.timing['total']:.1f} s)  -> {path}", flush=True)
    distributed.barrier()
    return path


def run_benchmark(cfg: RunConfig, progress: Optional[bool] = None) -> List[Path]:
    """Run every (method, seed) of ``cfg``; write one record each into ``cfg.output`` (rank 0)."""
    progress = cfg.progress if progress is None else progress
    methods = resolve_methods(cfg)
    ctx = prepare(cfg)
    written = []
    try:
        for method_name in methods:
            for seed in cfg.seeds:
                path = finish_run(ctx, run_one(ctx, method_name, seed, progress=progress))
                if path is not None:
                    written.append(path)
    finally:
        distributed.teardown()
    return written
