"""Multi-process runs: 2 gloo processes (torchrun) vs 1 process, and torchrun with one process.

Tolerance: the 2-process R matrix equals the 1-process one within 1e-4. Both see the same global
batches; only the order of floating-point sums differs (DDP's all-reduce of two half-batch
gradients, and the evaluator's per-shard sums)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmark.cli import main

TOLERANCE = 1e-4


@pytest.fixture
def run_args(tiny_run):
    """The tiny stream with 3 test images per domain (odd: uneven eval shards), 2 domains."""
    def args(output, batch_size=4):
        return tiny_run("finetune_decoder", output, domains=["polyp", "shadow"], epochs=1,
                        batch_size=batch_size) + ["--set", "stream_overrides.synthetic.test_per_domain=3"]
    return args


def test_two_gloo_processes_match_one_process(tmp_path, run_args, repo_root):
    assert main(run_args(tmp_path / "one")) == 0  # builds stream and cache, unless an earlier test did
    one = json.loads(next((tmp_path / "one").glob("*.json")).read_text())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "run_benchmark.py", *run_args(tmp_path / "two")],
                         cwd=repo_root, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    records = list((tmp_path / "two").glob("*.json"))
    assert len(records) == 1  # only rank 0 writes
    two = json.loads(records[0].read_text())
    assert two["extra"]["world_size"] == 2 and two["extra"]["run_id"] == one["extra"]["run_id"]
    for score in ("iou", "dice", "mae"):
        a, b = np.array(one["matrices"][score]), np.array(two["matrices"][score])
        np.testing.assert_allclose(b, a, rtol=0, atol=TOLERANCE)
    assert one["matrices"]["iou"][0] != one["matrices"]["iou"][1]  # training changed something


def test_torchrun_with_one_process_runs_the_distributed_path(tmp_path, run_args, repo_root):
    """``--nproc_per_node 1`` joins a process group (gloo here), wraps DDP and all-reduces the
    scores; the record equals a plain run's (a sum over one process changes nothing)."""
    assert main(run_args(tmp_path / "one")) == 0
    one = json.loads(next((tmp_path / "one").glob("*.json")).read_text())
    assert one["extra"]["world_size"] == 1 and one["extra"]["backend"] is None
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
                          "run_benchmark.py", *run_args(tmp_path / "ddp")],
                         cwd=repo_root, env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    ddp = json.loads(next((tmp_path / "ddp").glob("*.json")).read_text())
    assert ddp["extra"]["world_size"] == 1 and ddp["extra"]["backend"] == "gloo"
    for score in ("iou", "dice", "mae"):
        np.testing.assert_allclose(np.array(ddp["matrices"][score]), np.array(one["matrices"][score]),
                                   rtol=0, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nccl_one_process_per_gpu_matches_one_process(tmp_path, run_args, repo_root):
    """torchrun with one process per visible GPU (nccl) against a plain run on cuda:0. With one GPU
    this checks the nccl set-up, DDP wrapping and the all-reduces; with several, real sharding.
    Tolerance 1e-3: GPU kernels with atomic adds sum in varying order."""
    gpus = torch.cuda.device_count()
    args = run_args(tmp_path / "one") + ["--device", "cuda"]
    assert main(args) == 0
    one = json.loads(next((tmp_path / "one").glob("*.json")).read_text())
    args = run_args(tmp_path / "many", batch_size=max(4, gpus)) + ["--device", "cuda"]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(gpus),
                          "run_benchmark.py", *args], cwd=repo_root, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    many = json.loads(next((tmp_path / "many").glob("*.json")).read_text())
    assert many["extra"]["world_size"] == gpus and many["extra"]["backend"] == "nccl"
    if gpus <= 4:  # the same global batch as the plain run
        np.testing.assert_allclose(np.array(many["matrices"]["iou"]), np.array(one["matrices"]["iou"]),
                                   rtol=0, atol=1e-3)
