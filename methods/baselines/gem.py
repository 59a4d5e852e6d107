"""GEM: Gradient Episodic Memory (Lopez-Paz & Ranzato, NeurIPS 2017) on SAM's LoRA adapter.

The trainable parameters are those of ``lora`` (one peft LoRA, rank 10 on ``attn.qkv`` of encoder
blocks 7-11, tap ``block6``). An episodic memory keeps ``gem_patterns`` training items of every
finished domain (a seeded choice, as ``replay``'s buffer), stored as the harness's batches: the
cached features at the tap, the mask and the point prompts. At every training step the gradient of
the shared SAM loss on each past domain's memory is computed; when the step's gradient conflicts
with one of them (negative dot product) it is replaced by the solution of Avalanche's ``GEMPlugin``
quadratic program (GEM's dual, solved by quadprog): the gradient plus ``v_j`` times each memory
gradient, with ``v_j >= gem_strength`` (GEM's margin gamma) chosen to remove the conflicts.
Storage counts the memory (features as cached, masks at one bit per pixel, prompts).
"""
from __future__ import annotations

from typing import Optional

import torch
from avalanche.training.plugins import GEMPlugin

from methods.baselines import _regularizers as reg
from methods.baselines.lora import LoRA
from benchmark.core.registry import register_method


class SAMGEMPlugin(reg.MemoryProjection, GEMPlugin):
    """GEMPlugin whose memory holds cached-feature SAM batches and whose reference gradients are
    those of the SAM loss over the trainable parameters (the stock one runs ``model(x)`` with a
    classification criterion over every model parameter)."""

    def __init__(self, memory: reg.FeatureMemory, memory_strength: float):
        super().__init__(memory, memory.per_domain, memory_strength)

    def before_training_iteration(self, strategy, **kwargs):
        if self.memory.batches:  # one constraint per past domain: its memory's loss gradient
            self.G = torch.stack([reg.batch_gradient(strategy, b) for b in self.memory.batches])

    def project(self, g: torch.Tensor) -> Optional[torch.Tensor]:
        if not bool((self.G @ g < 0).any()):
            return None
        return self.solve_quadprog(g).to(g.device)  # the stock quadratic program on (self.G, g)


@register_method("gem")
class GEM(reg.MemoryMethod, LoRA):
    """Gradient Episodic Memory (Lopez-Paz & Ranzato 2017) on the same LoRA as lora."""
    relative_cost = 1.5  # a run's time against lora's (the default benchmark's records)

    storage_components = LoRA.storage_components + reg.MEMORY_COMPONENTS

    defaults = {
        # GEM keeps 256 items per task in the paper; every step pays one extra forward and backward
        # per past domain's memory, so 4 items per domain (2 on the built-in stream's 12 training
        # images per domain, methods/configs/gem.yaml).
        "gem_patterns": 4,
        "gem_strength": 0.5,      # margin gamma of the quadratic program (GEM paper's and Avalanche's)
    }

    def make_plugins(self) -> list:
        n, gamma = int(self.hp["gem_patterns"]), float(self.hp["gem_strength"])
        if n < 1 or gamma < 0:
            raise ValueError(f"gem: gem_patterns must be >= 1 and gem_strength >= 0, got {n}, {gamma}")
        self.projector = SAMGEMPlugin(reg.FeatureMemory(n, max(self.n_trained, 1), self.seed), gamma)
        return [self.projector]
