"""DER++: Dark Experience Replay++ (Buzzega et al., NeurIPS 2020) on SAM's LoRA adapter.

The trainable parameters are those of ``lora`` (one peft LoRA, rank 10 on ``attn.qkv`` of encoder
blocks 7-11, tap ``block6``). A reservoir buffer of ``der_buffer_size`` training items sees every
item of every training step and keeps each with the mask logits the model produced for it then
(the low-res logits of the step's forward, before the update). From the second step on, each step
adds, on two independent samples of ``der_batch_size`` buffered items,
``alpha * MSE(current logits, stored logits) + beta * SAM loss(buffered masks)``, both as means per
image (as the paper's mean-reduced losses) times the step's batch size (the task loss is summed over
the batch). Buffered items are the harness's batches at the method's tap: the cached block-6
features, not images, plus masks, prompts and logits; storage counts all of them.

Avalanche 0.6's ``DER`` is a whole strategy with a class-balanced buffer of class logits and cannot
be a ``SAMStrategy``; this is the same rule as a plugin with a reservoir buffer (as the authors'
mammoth code).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from avalanche.training.plugins import SupervisedPlugin

from methods.baselines import _regularizers as reg
from methods.baselines.lora import LoRA
from benchmark.core.registry import register_method
from scenarios.stream import to_device

#: the batch entries a buffered item keeps (with its logits): what run_model and the loss read
KEPT = ("features", "image", "mask", "points", "point_labels")


def _empty_like(value: Any, size: int) -> Any:
    if isinstance(value, dict):
        return {k: _empty_like(v, size) for k, v in value.items()}
    return torch.zeros((size, *value.shape[1:]), dtype=value.dtype, device=value.device)


def _write(store: Any, slot: int, value: Any, i: int) -> None:
    if isinstance(store, dict):
        for k in store:
            _write(store[k], slot, value[k], i)
    else:
        store[slot] = value[i]


class ReservoirBuffer:
    """Reservoir sampling (Vitter 1985) over every training item seen, with a seeded generator."""

    def __init__(self, size: int, seed: int):
        self.size, self.seen = size, 0
        self.generator = torch.Generator().manual_seed(seed)
        self.data: Optional[Dict[str, Any]] = None  # collated entries, ``size`` slots each

    @property
    def filled(self) -> int:
        return min(self.seen, self.size)

    def add(self, batch: Dict[str, Any]) -> None:
        """Offer each item of a collated batch (``KEPT`` entries and ``logits``) to the buffer."""
        if self.data is None:
            self.data = {k: _empty_like(batch[k], self.size) for k in batch}
        for i in range(len(batch["mask"])):
            slot = self.seen
            if slot >= self.size:
                slot = int(torch.randint(0, self.seen + 1, (1,), generator=self.generator))
            if slot < self.size:
                _write(self.data, slot, batch, i)
            self.seen += 1

    def contents(self) -> Dict[str, Any]:
        return reg.select(self.data, torch.arange(self.filled))

    def sample(self, k: int) -> Dict[str, Any]:
        picks = torch.randperm(self.filled, generator=self.generator)[:k]
        return reg.select(self.data, picks.to(self.data["mask"].device))


class DERPlusPlusPlugin(SupervisedPlugin):
    """DER++'s two buffer terms added to the loss, and the reservoir update after each step."""

    def __init__(self, buffer: ReservoirBuffer, alpha: float, beta: float, batch_size: int):
        super().__init__()
        self.buffer, self.alpha, self.beta, self.batch_size = buffer, alpha, beta, batch_size

    def before_backward(self, strategy, **kwargs):
        if self.buffer.seen == 0:
            return
        logit_batch = self.buffer.sample(self.batch_size)
        low_res = strategy.run_model(logit_batch)[0].float()
        mse = F.mse_loss(low_res, logit_batch["logits"], reduction="none").flatten(1).mean(1).mean()
        label_batch = self.buffer.sample(self.batch_size)
        seg = reg.seg_loss(strategy, label_batch)
        strategy.loss = strategy.loss + len(strategy.mb_y) * (self.alpha * mse + self.beta * seg)

    def after_training_iteration(self, strategy, **kwargs):
        batch = {k: v for k, v in strategy.mbatch.items() if k in KEPT}
        self.buffer.add({**batch, "logits": strategy.mb_output[0].detach().float()})


@register_method("der")
class DERPlusPlus(LoRA):
    """DER++ (Buzzega et al. 2020): reservoir replay of items with their logits, on the LoRA of lora."""
    relative_cost = 1.6  # a run's time against lora's (the default benchmark's records)

    storage_components = LoRA.storage_components + tuple(
        (f"method.items.{part}*", f"buffer_{part}") for part in ("inputs", "masks", "prompts", "logits"))

    defaults = {
        # The paper's smallest buffer is 200 items; 50 keeps it about replay's 10 per past domain on a
        # small stream (the built-in stream, 60 training images: 25, methods/configs/der.yaml).
        "der_buffer_size": 50,
        # the authors' released values for DER++ on Seq-CIFAR-10 with a 500-item buffer (mammoth's
        # utils/best_args.py: alpha 0.2, beta 0.5)
        "der_alpha": 0.2,
        "der_beta": 0.5,
        "der_batch_size": 4,      # items per buffer sample (two per step); half the training batch
    }

    def make_plugins(self) -> list:
        size, k = int(self.hp["der_buffer_size"]), int(self.hp["der_batch_size"])
        alpha, beta = float(self.hp["der_alpha"]), float(self.hp["der_beta"])
        if size < 1 or k < 1 or alpha < 0 or beta < 0:
            raise ValueError(f"der: der_buffer_size and der_batch_size must be >= 1 and der_alpha, "
                             f"der_beta >= 0, got {size}, {k}, {alpha}, {beta}")
        self.der = DERPlusPlusPlugin(ReservoirBuffer(size, self.seed), alpha, beta, k)
        return [self.der]

    def method_state(self) -> Dict[str, Any]:
        """The buffer's items and logits as kept (``reg.stored_items``: the storage's ``buffer_*``
        components), the masks' shape, how many items it has seen and its generator's state."""
        buffer, items = self.der.buffer, None
        if buffer.data is not None:
            contents = buffer.contents()
            items = reg.stored_items(contents, {"logits": contents["logits"]})
        mask_shape = list(buffer.data["mask"].shape[1:]) if buffer.data is not None else None
        return {"items": items, "mask_shape": mask_shape, "seen": buffer.seen,
                "generator": buffer.generator.get_state()}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        buffer = self.der.buffer
        buffer.seen = int(state.get("seen", 0))
        if "generator" in state:
            buffer.generator.set_state(state["generator"])
        items = state.get("items")
        if items is not None:
            items = to_device(reg.loaded_items(items, state["mask_shape"]), self.device)
            buffer.data = _empty_like(items, buffer.size)
            for i in range(buffer.filled):
                _write(buffer.data, i, items, i)
