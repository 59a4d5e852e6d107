"""Experience replay (ER; Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning").

A buffer keeps ``buffer_per_domain`` randomly chosen training images (with masks and prompts) of
every past domain (10 as in MoDA / CoSAM); on later domains each mini-batch of new data is joined by
``replay_batch_size`` buffered items (Avalanche's ``ReplayPlugin`` and ``ReplayDataLoader``, which
work unchanged with the dict batches and ``collate_samples``). The trained parameters are those of
``lora`` (rank-10 LoRA on blocks 7-11, tap ``block6``). Storage counts what a deployed ER keeps
(``kept_samples``, encoded as ``benchmark.core.storage.encode_samples``): the images (uint8,
3 x S x S), the masks packed at one bit per pixel and the point prompts (float32 x, y, label) - not
the cached features the benchmark happens to read for the buffered items. A saved model holds
these copies.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from avalanche.training.plugins import ReplayPlugin
from avalanche.training.storage_policy import ExemplarsBuffer

from benchmark.core.storage import KeptSamples
from methods.baselines.lora import LoRA
from benchmark.core.registry import register_method


class SeededDomainBuffer(ExemplarsBuffer):
    """``per_domain`` items drawn at random (seeded per domain) from each experience, kept forever."""

    def __init__(self, per_domain: int, n_domains: int, seed: int):
        super().__init__(max_size=per_domain * n_domains)
        self.per_domain, self.seed = per_domain, seed
        self.groups: List = []
        self.indices: List[List[int]] = []  # chosen item indices, per domain

    def post_adapt(self, agent, exp):
        data = exp.dataset
        g = torch.Generator().manual_seed(self.seed * 1000 + exp.current_experience)
        idx = torch.randperm(len(data), generator=g)[: self.per_domain].sort().values.tolist()
        self.indices.append(idx)
        self.add_group(data, idx)

    def add_group(self, data, idx: List[int]) -> None:
        """Keep items ``idx`` of ``data`` as one more domain's group of the buffer."""
        self.groups.append(data.subset(idx))
        buffer = self.groups[0]
        for group in self.groups[1:]:
            buffer = buffer.concat(group)
        self.buffer = buffer

    def update(self, strategy, **kwargs):  # what ReplayPlugin calls (the base's is deprecated)
        self.post_adapt(strategy, strategy.experience)

    def resize(self, strategy, new_size: int):
        raise NotImplementedError("the replay buffer has a fixed size per domain")

    def kept(self) -> KeptSamples:
        """The buffer as kept training items (storage counts them at their stored encoding)."""
        points = int(self.groups[0][0]["points"].shape[0]) if self.groups else 0
        return KeptSamples({t: list(idx) for t, idx in enumerate(self.indices)}, points)


@register_method("replay")
class Replay(LoRA):
    """Experience replay (ER) of N images per past domain, training the same LoRA as lora."""
    relative_cost = 1.3  # a run's time against lora's (the default benchmark's records)

    defaults = {"buffer_per_domain": 10, "replay_batch_size": 8}

    def make_plugins(self) -> list:
        n, mb = int(self.hp["buffer_per_domain"]), int(self.hp["replay_batch_size"])
        if n < 1 or mb < 1:
            raise ValueError(f"replay: buffer_per_domain and replay_batch_size must be >= 1, got {n}, {mb}")
        self.buffer = SeededDomainBuffer(n, max(self.n_trained, 1), self.seed)
        return [ReplayPlugin(mem_size=self.buffer.max_size, batch_size_mem=mb,
                             storage_policy=self.buffer)]

    def buffer_items(self) -> int:
        return sum(len(i) for i in self.buffer.indices)

    def kept_samples(self) -> Dict[str, KeptSamples]:
        return {"buffer": self.buffer.kept()}

    def method_state(self) -> Dict[str, Any]:
        return {"buffer_indices": [list(i) for i in self.buffer.indices]}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        self.buffer.indices = [[int(j) for j in i] for i in state.get("buffer_indices", [])]

    def on_resume(self, finished_experiences: Sequence) -> None:
        # The buffered items are re-taken from the finished domains' datasets by their indices.
        for experience, idx in zip(finished_experiences, self.buffer.indices):
            self.buffer.add_group(experience.dataset, idx)

    def extra_record(self) -> Dict:
        return {"buffer_indices": [list(i) for i in self.buffer.indices]}
