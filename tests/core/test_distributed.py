"""Sharding helpers: evaluation shards (benchmark/core/distributed.py) and the training sampler that
slices each global batch across processes (methods/template.py). Multi-process runs: e2e/test_torchrun.py."""
import torch
from torch.utils.data import DataLoader

from benchmark.core.distributed import shard
from methods.template import GlobalBatchShardSampler


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
