"""Shared plumbing of the LoRA-family baselines (lora, olora, merge_ta, merge_ties).

peft's ``inject_adapter_in_model`` wraps the chosen attention projections (``attn.qkv`` and/or
``attn.proj``) of the chosen image-encoder blocks in place; the runner gives every run its own
backbone copy, so nothing leaks between runs. The wrapped ``peft`` Linear layers live inside
``backbone.encoder_blocks``, so ``features_from(feats, "block6")`` runs them. Their LoRA factors
are registered in ``self.parts["lora"]`` so that the template optimises them (only those with
``requires_grad``). The merging helpers work on dense deltas ``scaling * B @ A`` per layer.
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Sequence

import torch
from torch import Tensor, nn

from methods.template import SAMStrategy

TARGETS = ("qkv", "proj")


def check_blocks(backbone: nn.Module, blocks: Sequence[int], tap: str, method: str) -> List[int]:
    """The sorted block list, or a ValueError naming the bad entry (outside the encoder or before the tap)."""
    n = len(backbone.encoder_blocks)
    if not isinstance(blocks, (list, tuple)) or not blocks or not all(
            isinstance(b, int) and not isinstance(b, bool) for b in blocks):
        raise ValueError(f"method {method!r}: hyper-parameter 'blocks' must be a non-empty list of "
                         f"block indices, got {blocks!r}")
    first = backbone.tap_index(tap) + 1
    for b in blocks:
        if not first <= b < n:
            raise ValueError(f"method {method!r}: block {b} in 'blocks' is outside {first}..{n - 1} "
                             f"(the encoder has {n} blocks and the method starts from tap {tap!r})")
    return sorted(set(blocks))


def check_targets(targets: Sequence[str], method: str) -> List[str]:
    if not isinstance(targets, (list, tuple)) or not targets or any(t not in TARGETS for t in targets):
        raise ValueError(f"method {method!r}: hyper-parameter 'targets' must be a non-empty list of "
                         f"{', '.join(TARGETS)}, got {targets!r}")
    return sorted(set(targets))


def inject_lora(backbone: nn.Module, blocks: Sequence[int], targets: Sequence[str], rank: int,
                alpha: float, adapter: str) -> Dict[str, nn.Module]:
    """Add LoRA ``adapter`` to ``blocks[*].attn.<targets>``; returns {"7.attn.qkv": peft layer}.

    A second call with another adapter name adds that adapter to the same peft layers.
    """
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    if int(rank) < 1:
        raise ValueError(f"LoRA rank must be at least 1, got {rank!r}")
    pattern = rf"({'|'.join(str(b) for b in blocks)})\.attn\.({'|'.join(targets)})"
    config = LoraConfig(r=int(rank), lora_alpha=float(alpha), target_modules=pattern, lora_dropout=0.0)
    with warnings.catch_warnings():  # "Already found a peft_config": several adapters are intended
        warnings.simplefilter("ignore", UserWarning)
        inject_adapter_in_model(config, backbone.encoder_blocks, adapter_name=adapter)
    layers = {name: m for name, m in backbone.encoder_blocks.named_modules() if isinstance(m, LoraLayer)}
    if len(layers) != len(blocks) * len(targets):
        raise RuntimeError(f"LoRA wrapped {sorted(layers)}, expected blocks {list(blocks)} x {list(targets)}")
    return layers


def activate(layers: Dict[str, nn.Module], adapters: List[str], trainable: Sequence[str]) -> None:
    """Make ``adapters`` active (their outputs are summed) and only ``trainable`` ones require grad."""
    for layer in layers.values():
        layer.set_adapter(list(adapters))
        for name in layer.lora_A:
            for p in (*layer.lora_A[name].parameters(), *layer.lora_B[name].parameters()):
                p.requires_grad_(name in trainable)


def adapter_tensors(layers: Dict[str, nn.Module], adapter: str) -> List[Tensor]:
    return [t for layer in layers.values() for t in (layer.lora_A[adapter].weight, layer.lora_B[adapter].weight)]


def dense_deltas(layers: Dict[str, nn.Module], adapter: str) -> Dict[str, Tensor]:
    """{layer name: scaling * B @ A} (the weight change the adapter makes), detached."""
    return {k: layer.get_delta_weight(adapter).detach().clone() for k, layer in layers.items()}


def add_to_base(layers: Dict[str, nn.Module], deltas: Dict[str, Tensor], sign: float = 1.0) -> None:
    """Add dense ``deltas`` to the wrapped (frozen) base weights in place: merging into the model."""
    with torch.no_grad():
        for k, delta in deltas.items():
            layers[k].get_base_layer().weight.add_(delta.to(layers[k].get_base_layer().weight), alpha=sign)


def task_arithmetic(vectors: Sequence[Tensor], lam: float) -> Tensor:
    """Task arithmetic: ``lam * sum(vectors)``."""
    return lam * torch.stack(list(vectors)).sum(0)


def ties_merge(vectors: Sequence[Tensor], density: float, lam: float = 1.0) -> Tensor:
    """TIES-merging (Yadav et al. 2023) of flat task vectors (n, d) -> (d,).

    Trim: keep each vector's top ``density`` fraction of entries by magnitude. Elect: the sign of
    the sum of the trimmed vectors per entry. Disjoint mean: average, per entry, the trimmed values
    that agree with the elected sign (zeros excluded). Then scale by ``lam``.
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"TIES density must be in (0, 1], got {density!r}")
    tv = torch.stack([v.flatten() for v in vectors])
    k = max(1, int(round(density * tv.shape[1])))
    if k < tv.shape[1]:
        thresh = tv.abs().kthvalue(tv.shape[1] - k + 1, dim=1, keepdim=True).values
        tv = torch.where(tv.abs() >= thresh, tv, torch.zeros_like(tv))
    sign = torch.sign(tv.sum(0))
    agree = (torch.sign(tv) == sign) & (tv != 0)
    total = (tv * agree).sum(0)
    count = agree.sum(0).clamp(min=1)
    return lam * total / count


class LoRAStrategy(SAMStrategy):
    """Base of the LoRA family: LoRA on ``attn.<targets>`` of ``blocks``, the rest frozen."""

    tap = "block6"
    starts_as_backbone = True  # zero-initialised LoRA B
    defaults = {
        "lr": 5e-3,  # as SAMCL's adapter (paper: Adam 0.005)
        "rank": 10,
        "alpha": 10.0,                 # peft scaling = alpha / rank
        "blocks": [7, 8, 9, 10, 11],   # as the RegCL comparison; must lie after the tap
        "targets": ["qkv"],            # qkv and/or proj
    }

    def build(self) -> None:
        name = self.method_name
        self.blocks = check_blocks(self.backbone, self.hp["blocks"], self.tap, name)
        self.targets = check_targets(self.hp["targets"], name)
        self.layers: Dict[str, nn.Module] = {}
        self.adapters: List[str] = []
        self.parts["lora"] = nn.ModuleDict()

    def add_adapter(self, adapter: str, trainable: Sequence[str] = ()) -> None:
        """Inject ``adapter``; all adapters stay active, only ``trainable`` (default: the new one) train."""
        self.layers = inject_lora(self.backbone, self.blocks, self.targets, self.hp["rank"],
                                  self.hp["alpha"], adapter)
        self.adapters.append(adapter)
        for key, layer in self.layers.items():  # the ModuleDicts grow with every adapter
            self.parts["lora"][key.replace(".", "_")] = nn.ModuleDict(
                {"lora_A": layer.lora_A, "lora_B": layer.lora_B})
        activate(self.layers, self.adapters, trainable or [adapter])  # peft puts it on the base's device
