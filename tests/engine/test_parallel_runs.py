"""jobs: runs spread over worker processes give the records of one process at the same thread
count; how many jobs and threads ``auto`` plans."""
import json

import pytest
import torch

from benchmark.cli import main
from benchmark.engine import parallel


def test_plan_jobs(monkeypatch):
    monkeypatch.setattr(parallel, "cpu_count", lambda: 8)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert parallel.plan_jobs("auto", 23, cpu, 1) == (8, 1)
    assert parallel.plan_jobs("auto", 23, cpu, 2) == (4, 2)
    assert parallel.plan_jobs("auto", 3, cpu, 1) == (3, 1)     # at most one per run
    assert parallel.plan_jobs("auto", 23, gpu, 1) == (1, 1)    # one device: one process
    assert parallel.plan_jobs(2, 23, cpu, None) == (2, 4)      # threads unset: the CPUs shared


def test_two_jobs_write_the_records_of_one(tmp_path, tiny_run, comparable):
    records = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        args = tiny_run("zero_shot,finetune_decoder", out, domains=["polyp", "shadow"], epochs=1)
        assert main(args + ["--jobs", jobs, "--set", "threads=1"]) == 0
        records[jobs] = {r["method"]: comparable(r) for r in
                         (json.loads(p.read_text()) for p in out.glob("*.json"))}
    assert sorted(records["2"]) == ["finetune_decoder", "zero_shot"]
    assert records["1"] == records["2"]


def test_parallel_runs_start_the_longest_first(tmp_path, tiny_run, monkeypatch):
    """The runs go to the workers in decreasing ``relative_cost`` (ties keep their order)."""
    seen = []
    monkeypatch.setattr(parallel, "run_parallel",
                        lambda tasks, *args, **kwargs: seen.extend(tasks) or [])
    args = tiny_run("zero_shot,lora,samcl,ewc", tmp_path / "out", domains=["polyp", "shadow"])
    assert main(args + ["--jobs", "2"]) == 0
    assert [method for _, method, _ in seen] == ["samcl", "ewc", "lora", "zero_shot"]  # 1.2, 1.2, 1, 0.1


_AT_START = []


def _note_modules() -> None:  # a worker's initializer: what it found imported
    import sys

    _AT_START.append(all(m in sys.modules for m in parallel.PRELOAD))


def _worker_facts(_):
    import os

    return os.getppid(), _AT_START[0]


def test_workers_start_with_the_harness_imported():
    """Workers fork from the fork server, which imported ``parallel.PRELOAD`` once (spawned workers
    would import torch and Avalanche each, about 9 s)."""
    import multiprocessing
    import os

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("this platform has no fork server: workers are spawned")
    parallel.start_server()
    facts = parallel.run_parallel([(0,), (1,)], _worker_facts, 2, 1, False, init=_note_modules)
    assert all(imported for _, imported in facts)
    assert all(ppid != os.getpid() for ppid, _ in facts)  # not children of this process


def test_the_server_starts_before_the_stream_is_prepared(tmp_path, tiny_run, monkeypatch):
    from benchmark.engine import run

    events = []
    monkeypatch.setattr(parallel, "start_server", lambda: events.append("server"))
    monkeypatch.setattr(parallel, "run_parallel", lambda *args, **kwargs: [])
    real = run.prepare
    monkeypatch.setattr(run, "prepare", lambda cfg: events.append("prepare") or real(cfg))
    assert main(tiny_run("zero_shot,lora", tmp_path / "out", domains=["polyp"]) + ["--jobs", "2"]) == 0
    assert events[:2] == ["server", "prepare"]
    events.clear()
    assert main(tiny_run("zero_shot,lora", tmp_path / "one", domains=["polyp"]) + ["--jobs", "1"]) == 0
    assert "server" not in events


def _environ_value(name):
    import os

    return os.environ.get(name)


def test_workers_see_the_parents_environment_of_now(monkeypatch):
    parallel.start_server()  # started before the variable is set, as by an earlier run
    monkeypatch.setenv("SAMCL_BENCH_PARALLEL_PROBE", "set after the server started")
    values = parallel.run_parallel([("SAMCL_BENCH_PARALLEL_PROBE",)] * 2, _environ_value, 2, 1, False,
                                   init=_note_modules)
    assert values == ["set after the server started"] * 2
