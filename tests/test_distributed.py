"""Multi-process runs: sharding helpers, and 2 gloo processes (torchrun) vs 1 process.

Tolerance: the 2-process R matrix equals the 1-process one within 1e-4. Both see the same global
batches; only the order of floating-point sums differs (DDP's all-reduce of two half-batch
gradients, and the evaluator's per-shard sums)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from benchmark.cli import main
from benchmark.distributed import shard
from methods.template import GlobalBatchShardSampler
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4


def test_eval_shards_cover_every_item_once():
    for n in (0, 1, 5, 7):
        for w in (1, 2, 3):
            seen = sorted(i for r in range(w) for i in shard(list(range(n)), r, w))
            assert seen == list(range(n))


def test_train_shards_are_slices_of_the_single_process_batches():
    n, batch, seed = 11, 4, 1234
    single = list(DataLoader(range(n), batch_size=batch, shuffle=True,
                             generator=torch.Generator().manual_seed(seed), collate_fn=list))
    shards = [list(GlobalBatchShardSampler(n, batch, seed, r, 2)) for r in range(2)]
    assert [a + b for a, b in zip(*shards)] == single  # 4+4+3 images: 2+2, 2+2, 1+2
    assert len(GlobalBatchShardSampler(n, batch, seed, 0, 2)) == 3
    assert len(GlobalBatchShardSampler(9, batch, seed, 0, 2)) == 2  # last batch of 1 < 2 dropped


def run_args(tmp: Path, output: Path) -> list:
    return ["run", "--methods", "finetune_decoder", "--checkpoint", "none", "--output", str(output),
            "--set", f"cache_dir={tmp}/features",
            "--set", f"stream_overrides.synthetic.cache_dir={tmp}/synthetic",
            "--set", "stream_overrides.synthetic.train_per_domain=4",
            "--set", "stream_overrides.synthetic.test_per_domain=3",  # odd: uneven eval shards
            "--set", "stream_overrides.domains=[polyp,shadow]",
            "--set", "hparams.epochs=1", "--set", "hparams.batch_size=4",
            "--no-progress", "--no-report"]


def test_two_gloo_processes_match_one_process(tmp_path):
    assert main(run_args(tmp_path, tmp_path / "one")) == 0  # also builds stream and cache
    one = json.loads(next((tmp_path / "one").glob("*.json")).read_text())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "run_benchmark.py", *run_args(tmp_path, tmp_path / "two")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    records = list((tmp_path / "two").glob("*.json"))
    assert len(records) == 1  # only rank 0 writes
    two = json.loads(records[0].read_text())
    assert two["extra"]["world_size"] == 2 and two["extra"]["run_id"] == one["extra"]["run_id"]
    for score in ("iou", "dice", "mae"):
        a, b = np.array(one["matrices"][score]), np.array(two["matrices"][score])
        np.testing.assert_allclose(b, a, rtol=0, atol=TOLERANCE)
    assert one["matrices"]["iou"][0] != one["matrices"]["iou"][1]  # training changed something
