"""Multi-process runs (``torchrun --nproc_per_node N run_benchmark.py ...``).

torchrun sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``/``MASTER_ADDR``; ``setup`` then joins the
process group (nccl on GPU, gloo on CPU), also with one process. Training averages the gradients
of the trainable parts with ``DistributedDataParallel`` (methods/template.py); each process takes
its slice of every global batch. Evaluation gives process r the images r, r+W, r+2W, ... of each
domain and all-reduces the score sums and image counts, so no image is counted twice (a padded
``DistributedSampler`` would).
Only rank 0 writes records, run state and cache entries; the others wait at a barrier.
"""
from __future__ import annotations

import contextlib
import os
from typing import Dict, Iterator, List, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Subset


def launched_by_torchrun() -> bool:
    """Whether the environment holds an ``env://`` rendezvous (torchrun sets all four)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def backend() -> str | None:
    """The process group's backend (nccl, gloo), None when not distributed."""
    return str(dist.get_backend()) if is_distributed() else None


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def setup(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun (also with one process, so that
    ``--nproc_per_node 1`` runs the DDP and all-reduce path); returns this process's device."""
    if not launched_by_torchrun() or is_distributed():
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return device


def teardown() -> None:
    if is_distributed():
        dist.destroy_process_group()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds a cache entry); the others then run it (and find
    the entry ready). Every process must enter the block the same number of times."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def shard(dataset, r: int, w: int) -> Subset:
    """Items r, r+w, r+2w, ... of ``dataset``: the shards cover it exactly once."""
    return Subset(dataset, range(r, len(dataset), w))
