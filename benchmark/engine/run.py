"""A run: one method with one seed over the domain stream, as explicit phases.

Row 0 of every score matrix is the method before any training (zero-shot); row t is after training
the t-th domain. Every row evaluates every domain: trained, not yet trained and evaluation-only.
A run saves its state at each domain boundary (``resume.py``) and continues from there when started
again with the same command; under torchrun it trains and evaluates on every process and only
rank 0 writes (``benchmark/core/distributed.py``). Progress bars and TensorBoard are observers.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from benchmark.core import distributed
from benchmark.core.registry import list_methods, load_module
from benchmark.core.storage import StorageLedger
from benchmark.engine import parallel, resume, saved_models
from benchmark.engine.compiled import CompileClock, compile_backbone
from benchmark.engine.config import RunConfig
from benchmark.engine.context import RunContext, prepare, resolve_device, seed_everything
from benchmark.engine.evaluator import evaluate_sharded, stack_rows
from benchmark.engine.fingerprint import identify
from benchmark.engine.observers import Observer, default_observers
from benchmark.engine.protocol import apply_evaluation, load_protocol, stream_config
from benchmark.engine.resolve import Resolved, check_names, resolve
from benchmark.engine.samples import SampleLog
from benchmark.reporting.records import RunRecord, write_record
from scenarios.config import order_choices
from scenarios.fileio import clean_stale_temps
from scenarios.stream import to_avalanche

REPO_DIR = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)


class Run:
    """``Run(ctx, cfg, method, seed).execute()`` -> the RunRecord (not yet written)."""

    def __init__(self, ctx: RunContext, cfg: RunConfig, method: str, seed: int,
                 observers: Sequence[Observer] = ()):
        self.ctx, self.cfg, self.method, self.seed = ctx, cfg, method, seed
        self.stream = ctx.stream
        self.observers = list(observers)
        self.resolved: Resolved = resolve(cfg, ctx.stream_cfg, method, seed)
        self.identity = identify(cfg, ctx.stream_cfg, method, seed, self.resolved.hparams,
                                 data=ctx.data, device=ctx.device)
        self.run_id = self.identity.run_id
        self.state_dir = resume.state_dir(cfg.output, self.run_id)
        self.rows: List[Dict[str, List[float]]] = []
        self.train_times: List[float] = []
        self.eval_times: List[float] = []
        self.ledger = StorageLedger()
        self.compiling = CompileClock(cfg.compile)  # seconds spent compiling (timing.compile)
        self.done, self.elapsed_before = 0, 0.0
        self.row0_shared = False  # row 0 taken from the context (evaluate_first_row)
        self._pending_losses = None  # (first index, losses) of the last trained domain
        self.samples = (SampleLog(cfg.output, self.run_id, list(self.stream.domain_names),
                                  cfg.log_samples, cfg.save_masks)
                        if cfg.log_samples or cfg.save_masks else None)

    def execute(self) -> RunRecord:
        self.started = time.perf_counter()
        self.views = self.ctx.views_at(self.resolved.tap)
        self.build_strategy()
        self._notify("on_start", self)
        try:
            if not self.restore():
                self.evaluate_first_row()
            for t in range(self.done, self.stream.trained):
                self.train_domain(t)
                self.evaluate_row()
                self.checkpoint(t + 1)
        finally:
            self._notify("on_end", self)
        return self.record()

    # ------------------------------------------------------------------ phases
    def build_strategy(self) -> None:
        seed_everything(self.seed)  # after the cache: whether it was built must not change the run
        train, test, general = self.views
        strategy = self.resolved.cls(
            backbone=copy.deepcopy(self.ctx.backbone), domain_names=list(self.stream.domain_names),
            n_trained=self.stream.trained, hparams=self.resolved.hparams,
            device=str(self.ctx.device), seed=self.seed)
        strategy.model.to(self.ctx.device)
        strategy.general_datasets = general
        apply_evaluation(strategy, load_protocol(self.cfg.protocol), self.cfg.backbone)
        strategy.enable_precision(self.cfg.precision, self.cfg.channels_last)
        strategy.prefetch = self.cfg.prefetch
        if self.cfg.compile:
            compile_backbone(strategy.backbone)
        self.strategy = strategy
        self.experiences = list(to_avalanche(train, test).train_stream)

    def restore(self) -> bool:
        """Continue from a saved state of this run id, if resuming is on and one exists; a saved
        state of the same settings under another fingerprint is refused (``--no-resume``: removed)."""
        if not self.cfg.resume:
            resume.discard_other_attempts(self.cfg.output, self.identity)
            return False
        resume.refuse_other_fingerprints(self.cfg.output, self.identity)
        state = resume.load_state(self.state_dir)
        if state is None:
            return False
        self.strategy.load_state_dict(state["strategy"])
        self.rows, self.done = list(state["rows"]), int(state["domain"])
        self.ledger = StorageLedger.from_dict(state["ledger"])
        self.train_times, self.eval_times = list(state["train_times"]), list(state["eval_times"])
        self.elapsed_before = float(state["elapsed"])
        self.compiling.seconds.update(state.get("compile", {}))
        self.row0_shared = bool(state.get("row0_shared", False))
        if self.samples is not None:
            self.samples.rows = list(state.get("samples", []))
        self.strategy.on_resume(self.experiences[:self.done])
        resume.set_rng_state(state["rng"])
        self._notify("on_resume", self, self.done)
        return True

    def train_domain(self, t: int) -> None:
        start, first = time.perf_counter(), len(self.strategy.loss_history)
        with self.compiling.phase("train"):
            self.strategy.learn_domain(self.experiences[t], t, num_workers=self.cfg.num_workers)
        self.train_times.append(time.perf_counter() - start)
        self._notify("on_images", len(self.views[0][t]))
        self.ledger.record(self.stream.domain_names[t], self.strategy.storage())
        self._pending_losses = (first, self.strategy.loss_history[first:])

    def shared_row_key(self) -> Optional[str]:
        """The key under which this run's row 0 is shared with the context's other runs, or None.

        A method whose ``starts_as_backbone`` is True predicts, before any training, the frozen
        backbone's own logits from its tap bit for bit, so its row 0 is a function of the tap, the
        evaluation batch size and the fingerprint without the hyper-parameters and the seed: the
        first such run evaluates it, later runs in the same process take it (a worker of a
        parallel run evaluates it once per tap). Per-image logs need the images, and under
        torchrun every process must evaluate alike: no sharing there."""
        if (not getattr(self.strategy, "starts_as_backbone", False) or self.samples is not None
                or distributed.is_distributed()):
            return None
        fp = {k: v for k, v in self.identity.fingerprint.items() if k not in ("hparams", "seed")}
        fp.update(tap=self.resolved.tap, eval_batch_size=int(self.strategy.hp["eval_batch_size"]))
        return json.dumps(fp, sort_keys=True, default=str)

    def evaluate_first_row(self) -> None:
        """Row 0: evaluated, or the context's shared copy (``shared_row_key``; the record says
        which in ``extra.row0_shared`` and times it 0 s)."""
        key = self.shared_row_key()
        shared = self.ctx.shared_rows.get(key) if key is not None else None
        if shared is None:
            self.evaluate_row()
            if key is not None:
                self.ctx.shared_rows[key] = copy.deepcopy(self.rows[0])
            return
        self.row0_shared = True
        self.eval_times.append(0.0)
        self._notify("on_images", sum(len(ds) for ds in self.views[1]))
        row = copy.deepcopy(shared)
        self._notify("on_row", self, 0, row)
        self.rows.append(row)

    def evaluate_row(self) -> None:
        """Score every domain. The random generators are left as they were (the evaluation's
        loaders draw from torch's), so what training sees never depends on what was evaluated:
        a shared row 0 (``evaluate_first_row``) or another test split leaves training as it is."""
        start, rng = time.perf_counter(), resume.rng_state()
        declared = self.ctx.stream_cfg.domain_metrics()
        with self.compiling.phase("eval"):
            row = evaluate_sharded(self.strategy, self.views[1],
                                   batch_size=int(self.strategy.hp["eval_batch_size"]),
                                   num_workers=self.cfg.num_workers, prefetch=self.cfg.prefetch,
                                   progress=_Progress(self),
                                   metrics=[declared.get(v.domain_name, ()) for v in self.views[1]],
                                   samples=self.samples and self.samples.for_row(
                                       len(self.rows), final=len(self.rows) == self.stream.trained))
        resume.set_rng_state(rng)
        self.eval_times.append(time.perf_counter() - start)
        self._notify("on_row", self, len(self.rows), row)
        self.rows.append(row)
        pending, self._pending_losses = self._pending_losses, None
        if pending is not None:
            self._notify("on_losses", self, *pending)

    def checkpoint(self, done: int) -> None:
        """Save the trained model after ``done`` domains when ``save_models`` is on
        (saved_models.py), and the state to resume from (not after the last: the record follows)."""
        if not distributed.is_main():
            return
        if saved_models.enabled(self.cfg):
            saved_models.save_model(self, done)
        if done >= self.stream.trained:
            return
        resume.save_state(self.state_dir, {
            "run_id": self.run_id, "domain": done, "rows": self.rows,
            "ledger": self.ledger.to_dict(), "train_times": self.train_times,
            "eval_times": self.eval_times, "elapsed": self._elapsed(), "compile": self.compiling.seconds,
            "strategy": self.strategy.state_dict(), "rng": resume.rng_state(),
            "samples": self.samples.rows if self.samples is not None else [],
            "row0_shared": self.row0_shared}, self.identity)

    def record(self) -> RunRecord:
        s, strategy, trained = self.stream, self.strategy, self.stream.trained
        epochs = int(strategy.hp["epochs"])
        train, test, _ = self.views
        timing = {"cache_build": self.ctx.cache_seconds, "train": self.train_times,
                  "eval": self.eval_times, "train_total": float(sum(self.train_times)),
                  "total": self._elapsed(),
                  # for images per second: training images x epochs per domain, images per row
                  "train_images": [len(train[t]) * epochs for t in range(trained)],
                  "eval_images": sum(len(ds) for ds in test)}
        if self.cfg.compile:  # inside train / eval above; throughput leaves it out of the rates
            timing["compile"] = dict(self.compiling.seconds)
        extra = dict(strategy.extra_record())
        extra.update(loss_history=list(strategy.loss_history), run_id=self.run_id,
                     world_size=distributed.world_size(), backend=distributed.backend(),
                     command=list(sys.argv),  # the process's command line (provenance)
                     attention=self.ctx.backbone.attention, row0_shared=self.row0_shared)
        manifests = data_manifests(s)
        if manifests:
            extra["data_manifests"] = manifests
        record = RunRecord.create(
            method=self.method, backbone=self.cfg.backbone,
            stream={"name": self.ctx.stream_cfg.name, "domains": list(s.domain_names),
                    "trained": trained, "eval_only": list(s.domain_names[trained:])},
            seed=self.seed, matrices={k: v.tolist() for k, v in stack_rows(self.rows).items()},
            device=self.ctx.device, repo_dir=REPO_DIR, config=self.cfg.to_dict(),
            hparams=strategy.hp, storage=self.ledger.to_dict(), timing=timing, extra=extra,
            columns=[c.to_dict() for c in strategy.report_columns],
            fingerprint=self.identity.fingerprint)
        if self.samples is not None and self.samples.log and distributed.is_main():
            record.extra["samples_file"] = self.samples.write(
                f"{self.method}__{self.cfg.backbone}__seed{self.seed}__{self.run_id}")
        return record

    # ------------------------------------------------------------------ helpers
    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def _notify(self, hook: str, *args) -> None:
        for observer in self.observers:
            getattr(observer, hook)(*args)


def data_manifests(stream) -> Dict[str, str]:
    """Domain -> fingerprint of the ``prepare`` manifest of the folder it was read from (folders
    without a manifest, such as the synthetic stream's, are left out)."""
    out = {}
    for ds in stream.train_datasets + stream.test_datasets + stream.general_datasets:
        fingerprint = getattr(ds, "manifest_fingerprint", None)
        if fingerprint:
            out[ds.domain_name] = fingerprint
    return out


class _Progress:
    """What the evaluator updates per batch: forwards image counts to the run's observers."""

    def __init__(self, run: Run):
        self.run = run

    def update(self, n: int) -> None:
        self.run._notify("on_images", n)


def finish_run(ctx: RunContext, cfg: RunConfig, record: RunRecord) -> Optional[Path]:
    """Rank 0 writes the record, then removes the run's saved state; returns the record's path."""
    path = None
    if distributed.is_main():
        path = write_record(record, cfg.output)
        resume.clear_state(resume.state_dir(cfg.output, record.extra["run_id"]))
        iou = np.asarray(record.matrices["iou"], dtype=float)
        T = ctx.stream.trained
        print(f"  {record.method:<18s} seed {record.seed}: final mIoU {np.nanmean(iou[T, :T]):.3f}"
              f"  ({record.timing['total']:.1f} s)  -> {path}", flush=True)
    distributed.barrier()
    return path


def run_one(ctx: RunContext, cfg: RunConfig, method: str, seed: int,
            observers: Sequence[Observer] = ()) -> Optional[Path]:
    """One run, start to written record, under its run id's lock (rank 0 takes it)."""
    run = Run(ctx, cfg, method, seed, observers)
    lock = resume.run_lock(cfg.output, run.run_id) if distributed.is_main() else contextlib.nullcontext()
    with lock:
        return finish_run(ctx, cfg, run.execute())


def check_output(output: str | Path) -> None:
    """The output folder must take files before anything trains: else a one-line error naming it.
    Then the temporary files that killed writes left in it (records, run states, saved models,
    samples) are removed; a live writer's (another run into this folder) are kept."""
    folder = Path(output)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(f"output folder {folder} is not writable ({exc.strerror or exc}); "
                         f"choose another --output") from None
    for name in clean_stale_temps(folder, recursive=True):
        log.warning("%s: removed %s, left by a killed write", folder, name)


_WORKER: dict = {"contexts": {}}  # in a worker process of a parallel run: configs, contexts


def _prepare_worker(orders: List[RunConfig]) -> None:
    resolve_methods(orders[0])  # imports the config's extra method modules in this process too
    _WORKER["orders"] = orders


def _run_in_worker(k: int, method: str, seed: int) -> Optional[str]:
    cfg = _WORKER["orders"][k]
    if k not in _WORKER["contexts"]:
        _WORKER["contexts"][k] = prepare(cfg)
    ctx = _WORKER["contexts"][k]
    path = run_one(ctx, cfg, method, seed, default_observers(cfg, False))
    return None if path is None else str(path)


def _run_in_processes(orders: List[RunConfig], methods: List[str], runs: List[tuple], jobs: int,
                      threads: int, progress: bool, first: RunContext) -> List[Path]:
    """``runs`` over ``jobs`` worker processes (``parallel.py``), after this process has built
    every order's stream and feature cache at the taps the methods use."""
    if distributed.is_distributed():
        raise ValueError("config field 'jobs' must be 1 under torchrun (it already runs one "
                         "process per device)")
    cost = {}
    for k, order_cfg in enumerate(orders):
        ctx = first if k == 0 else prepare(order_cfg)  # ``first``: the first order's, prepared
        found = resolved(order_cfg, ctx, methods)
        cost.update({m: float(getattr(r.cls, "relative_cost", 1.0)) for m, r in found.items()})
        ctx.prepare_taps(sorted({r.tap for r in found.values()}))  # built once here; the workers read it
    runs = sorted(runs, key=lambda run: -cost[run[1]])  # the longest first (stable otherwise)
    paths = parallel.run_parallel(runs, _run_in_worker, jobs, threads, progress,
                                  init=_prepare_worker, initargs=(orders,))
    return [Path(p) for p in paths if p is not None]


def resolved(cfg: RunConfig, ctx: RunContext, methods: Sequence[str]) -> Dict[str, Resolved]:
    """Each method resolved under ``cfg`` (its first seed): its class, hyper-parameters and tap."""
    return {m: resolve(cfg, ctx.stream_cfg, m, cfg.seeds[0]) for m in methods}


def resolve_methods(cfg: RunConfig) -> List[str]:
    """The method names ``cfg`` asks for, after importing its extra method modules; unknown names
    (in ``methods``, ``method_hparams``) and hyper-parameters no method has are errors."""
    for module in cfg.method_modules:
        load_module(module)
    known = list_methods()
    methods = known if cfg.methods == "all" else list(cfg.methods)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(known)}")
    check_names(cfg, methods)
    return methods


def order_configs(cfg: RunConfig) -> List[RunConfig]:
    """One run config per domain order ``cfg`` asks for (``scenarios.config.order_choices``:
    ``cfg.orders`` seeded orders or the stream's explicit ones), each with that order's stream
    overrides; the stream's own order is ``cfg`` unchanged."""
    choices = order_choices(stream_config(cfg), cfg.orders)
    return [dataclasses.replace(cfg, stream_overrides={**cfg.stream_overrides, **choice})
            for choice in choices]


def run_benchmark(cfg: RunConfig, progress: Optional[bool] = None) -> List[Path]:
    """Run every (domain order, method, seed) of ``cfg``; write one record each into
    ``cfg.output`` (rank 0). The backbone, stream and cache are prepared once per order."""
    progress = cfg.progress if progress is None else progress
    methods = resolve_methods(cfg)
    orders = order_configs(cfg)
    runs = [(k, method, seed) for k in range(len(orders)) for method in methods for seed in cfg.seeds]
    check_output(cfg.output)
    jobs, threads = parallel.plan_jobs(cfg.jobs, len(runs), resolve_device(cfg.device), cfg.threads)
    if jobs > 1 and not distributed.is_distributed():
        parallel.start_server()  # the workers' imports overlap this process's preparation
    written = []
    try:
        ctx = prepare(orders[0])
        if jobs > 1:
            return _run_in_processes(orders, methods, runs, jobs, threads, progress, ctx)
        for k, order_cfg in enumerate(orders):
            ctx = ctx if k == 0 else prepare(order_cfg)
            ctx.prepare_taps(sorted({r.tap for r in resolved(order_cfg, ctx, methods).values()}))
            for _, method, seed in (r for r in runs if r[0] == k):
                path = run_one(ctx, order_cfg, method, seed, default_observers(order_cfg, progress))
                if path is not None:
                    written.append(path)
    finally:
        distributed.teardown()
    return written
