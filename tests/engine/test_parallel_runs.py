"""jobs: runs spread over worker processes give the records of one process at the same thread
count; how many jobs and threads ``auto`` plans."""
import json

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
    assert [method for _, method, _ in seen] == ["samcl", "lora", "ewc", "zero_shot"]
