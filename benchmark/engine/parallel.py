"""Local parallel runs: the runs of one config spread over ``jobs`` worker processes on one machine.

The parent prepares the context first (the synthetic stream and the feature cache at every tap the
runs use are built once, on disk), then each worker process prepares its own context from the same
files and runs whole runs, one at a time, pinned to ``threads_per_job`` intra-op threads. Workers
are forked from a fork server (spawned where the platform has none: forking a process whose OpenMP
threads have run is unsafe, and the server's have not run). ``start_server`` starts it before the
parent builds the stream and the cache, so that the server imports the harness (torch, Avalanche:
about 9 s) on another core meanwhile and every worker starts with those imports done. A run's record depends on its
thread count, never on how many jobs ran beside it. (torch.distributed runs are the other way to
use several processes: ``jobs`` > 1 under torchrun is an error.)
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Optional, Sequence, Tuple

import torch


def cpu_count() -> int:
    """CPUs this process may use (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_jobs(jobs, n_runs: int, device: torch.device, threads: Optional[int]) -> Tuple[int, int]:
    """``(jobs, threads per job)`` for ``n_runs`` runs. ``jobs: auto`` is 1 on a GPU (one device)
    and on a CPU as many as fit the CPUs at ``threads`` each (default 1), at most one per run."""
    per_job = threads or 1
    if jobs == "auto":
        jobs = 1 if device.type != "cpu" else max(1, cpu_count() // per_job)
    jobs = max(1, min(int(jobs), n_runs))
    if threads is None:
        per_job = max(1, cpu_count() // jobs) if jobs > 1 else torch.get_num_threads()
    return jobs, per_job


#: what the fork server imports once for all workers (the engine and the strategy template)
PRELOAD = ["benchmark.engine.run", "methods.template"]


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def start_server() -> None:
    """Start the fork server now (it imports ``PRELOAD`` in the background); a no-op where the
    platform spawns workers instead, or where the server runs already."""
    context = _context()
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _start_worker(threads: int, init: Callable, initargs: tuple, environ: dict) -> None:
    # A forked worker has the server's environment, from when it started: take the parent's now.
    os.environ.clear()
    os.environ.update(environ)
    torch.set_num_threads(threads)
    init(*initargs)


def run_parallel(tasks: Sequence[tuple], fn: Callable, jobs: int, threads: int, progress: bool,
                 init: Callable, initargs: tuple = ()) -> list:
    """``[fn(*task) for task in tasks]`` over ``jobs`` worker processes, each set up once by
    ``init(*initargs)`` with ``threads`` intra-op threads (``fn`` and ``init`` are module-level
    functions, so that the workers find them). The first failure cancels the tasks not yet
    started and is raised here."""
    from tqdm.auto import tqdm

    print(f"running {len(tasks)} runs in {jobs} processes, {threads} thread(s) each", flush=True)
    with ProcessPoolExecutor(jobs, mp_context=_context(), initializer=_start_worker,
                             initargs=(threads, init, initargs, dict(os.environ))) as pool:
        futures = [pool.submit(fn, *task) for task in tasks]
        with tqdm(total=len(futures), desc="runs", unit="run", disable=not progress) as bar:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                bar.update(len(done))
                failed = [f for f in done if f.exception() is not None]
                if failed:
                    for f in pending:
                        f.cancel()
                    raise failed[0].exception()
    return [f.result() for f in futures]
