"""A-GEM: Averaged Gradient Episodic Memory (Chaudhry et al., ICLR 2019) on SAM's LoRA adapter.

The trainable parameters are those of ``lora`` (one peft LoRA, rank 10 on ``attn.qkv`` of encoder
blocks 7-11, tap ``block6``). An episodic memory keeps ``agem_patterns`` training items of every
finished domain (a seeded choice, as ``replay``'s buffer), stored as the harness's batches: the
cached features at the tap, the mask and the point prompts. At every training step a sample of
``agem_sample_size`` memory items (equal shares per past domain, drawn by the method's own seeded
generator) gives a reference gradient of the shared SAM loss; when the step's gradient g points
against it (g . g_ref < 0) it is projected: g - (g . g_ref / g_ref . g_ref) g_ref (Avalanche's
``AGEMPlugin``). Storage counts the memory (features as cached, masks at one bit per pixel, prompts).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from avalanche.training.plugins import AGEMPlugin

from methods.baselines import _regularizers as reg
from methods.baselines.lora import LoRA
from benchmark.core.registry import register_method


def agem_project(g: torch.Tensor, ref: torch.Tensor) -> Optional[torch.Tensor]:
    """A-GEM's rule: ``g`` projected onto the half-space g . ref >= 0, or None when it is in it."""
    dot = torch.dot(g, ref)
    if dot >= 0:
        return None
    return g - ref * (dot / torch.dot(ref, ref))


class SAMAGEMPlugin(reg.MemoryProjection, AGEMPlugin):
    """AGEMPlugin whose memory holds cached-feature SAM batches and whose reference gradient is the
    SAM loss's over the trainable parameters (the stock one runs ``model(x)`` with a classification
    criterion over every model parameter, and samples with the global RNG)."""

    def __init__(self, memory: reg.FeatureMemory, sample_size: int, seed: int):
        super().__init__(memory, memory.per_domain, sample_size)
        self.generator = torch.Generator().manual_seed(seed)

    def before_training_iteration(self, strategy, **kwargs):
        if self.memory.batches:
            self.reference_gradients = reg.batch_gradient(strategy, self.sample_from_memory())

    def sample_from_memory(self):
        return self.memory.sample(self.sample_size, self.generator)

    def project(self, g: torch.Tensor) -> Optional[torch.Tensor]:
        return agem_project(g, self.reference_gradients)


@register_method("agem")
class AGEM(reg.MemoryMethod, LoRA):
    """Averaged GEM (Chaudhry et al. 2019) on the same LoRA as lora."""
    relative_cost = 1.3  # a run's time against lora's (the default benchmark's records)

    storage_components = LoRA.storage_components + reg.MEMORY_COMPONENTS

    defaults = {
        "agem_patterns": 10,      # items per past domain (as replay's buffer)
        # A-GEM's reference batch equals its training batch in the paper; half of the default batch
        # (8) keeps the extra forward and backward per step at half a step's cost (2 of 4 on the
        # built-in stream, methods/configs/agem.yaml).
        "agem_sample_size": 4,
    }

    def make_plugins(self) -> list:
        n, k = int(self.hp["agem_patterns"]), int(self.hp["agem_sample_size"])
        if n < 1 or k < 1:
            raise ValueError(f"agem: agem_patterns and agem_sample_size must be >= 1, got {n}, {k}")
        memory = reg.FeatureMemory(n, max(self.n_trained, 1), self.seed)
        self.projector = SAMAGEMPlugin(memory, k, self.seed)
        return [self.projector]

    def method_state(self) -> Dict[str, Any]:
        return {**super().method_state(), "generator": self.projector.generator.get_state()}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        super().load_method_state(state)
        if "generator" in state:
            self.projector.generator.set_state(state["generator"])
