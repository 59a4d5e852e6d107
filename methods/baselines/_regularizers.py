"""What the regularisation baselines (ewc, si, mas, gem, agem, der) share to run Avalanche's
classification plugins on SAM's dict batches.

Avalanche's plugins compute importances and reference gradients with ``model(batch[0])`` and a
classification criterion, over every parameter of the model. Here they run the harness's batches
(cached features at the method's tap, masks, prompts) through ``strategy.run_model`` and the shared
SAM loss (``strategy.sam_loss_of``), over the trainable parameters only (the LoRA factors), so the
frozen backbone is neither copied, nor penalised, nor projected.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch
from avalanche.training.utils import ParamData
from torch import Tensor
from torch.utils.data import DataLoader

from benchmark.core.storage import pack_masks, pack_prompts, unpack_masks
from methods.baselines.replay import SeededDomainBuffer
from scenarios.stream import collate_samples, to_device


def domain_batches(strategy, dataset, max_items: Optional[int] = None) -> Iterator[Dict[str, Any]]:
    """The dataset's items in mini-batches of the training batch size, on the strategy's device:
    all of them, or the first ``max_items`` of a permutation seeded by the run's seed and domain."""
    if max_items is not None and max_items < len(dataset):
        g = torch.Generator().manual_seed(strategy.seed * 1000 + max(strategy.domain_index, 0))
        dataset = dataset.subset(torch.randperm(len(dataset), generator=g)[:max_items].sort().values.tolist())
    loader = DataLoader(dataset, batch_size=strategy.train_mb_size,
                        collate_fn=getattr(dataset, "collate_fn", collate_samples))
    for batch in loader:
        yield to_device(batch, strategy.device)


def seg_loss(strategy, batch: Dict[str, Any]) -> Tensor:
    """The shared SAM loss of ``batch``, per image (mean over the batch's images)."""
    return strategy.sam_loss_of(*strategy.run_model(batch), batch["mask"]) / len(batch["mask"])


def output_sq_norm(strategy, batch: Dict[str, Any]) -> Tensor:
    """MAS's label-free objective on segmentation: the squared L2 norm of the mask logits (the
    per-pixel "class" vector has one entry), mean over pixels and images."""
    return strategy.run_model(batch)[0].float().pow(2).mean()


def mean_grad_stat(strategy, dataset, objective: Callable[[Any, Dict], Tensor],
                   stat: Callable[[Tensor], Tensor], max_items: Optional[int] = None) -> Dict[str, Tensor]:
    """{trainable parameter name: mean over mini-batches of stat(d objective / d parameter)}:
    EWC's Fisher (stat = square, objective = seg_loss), MAS's importance (abs, output_sq_norm)."""
    params = strategy.named_trainable()
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = strategy.model.training
    strategy.model.eval()
    n_batches = 0
    for batch in domain_batches(strategy, dataset, max_items):
        strategy.model.zero_grad(set_to_none=True)
        objective(strategy, batch).backward()
        for n, p in params.items():
            if p.grad is not None:
                total[n] += stat(p.grad.detach())
        n_batches += 1
    strategy.model.zero_grad(set_to_none=True)
    strategy.model.train(was_training)
    return {n: t / max(n_batches, 1) for n, t in total.items()}


def flat_grad(params: List[Tensor]) -> Tensor:
    """The parameters' gradients as one vector (zeros where a parameter has none)."""
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel(), device=p.device)
                      for p in params])


def set_flat_grad(params: List[Tensor], vector: Tensor) -> None:
    """Write ``vector`` (as ``flat_grad`` lays it out) back into the parameters' gradients."""
    offset = 0
    for p in params:
        if p.grad is not None:
            p.grad.copy_(vector[offset:offset + p.numel()].view_as(p).to(p.grad))
        offset += p.numel()


def batch_gradient(strategy, batch: Dict[str, Any]) -> Tensor:
    """The flat gradient of ``seg_loss`` on ``batch`` w.r.t. the trainable parameters; the
    gradients are cleared afterwards (the training step computes its own)."""
    params = list(strategy.named_trainable().values())
    strategy.model.zero_grad(set_to_none=True)
    seg_loss(strategy, batch).backward()
    g = flat_grad(params)
    strategy.model.zero_grad(set_to_none=True)
    return g


class PenaltyLog:
    """Mixin for a plugin whose ``before_backward`` adds its penalty to ``strategy.loss``: keeps the
    added value per step, per experience (for the record's ``<name>_weighted_penalty_mean``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.penalty_log: Dict[int, List[float]] = defaultdict(list)

    def before_backward(self, strategy, **kwargs):
        before = strategy.loss.detach().clone()  # the plugins add in place
        super().before_backward(strategy, **kwargs)
        self.penalty_log[strategy.clock.train_exp_counter].append(float(strategy.loss.detach() - before))

    def mean_penalties(self, n_experiences: int) -> List[float]:
        logs = self.penalty_log
        return [sum(logs[t]) / len(logs[t]) if logs[t] else 0.0 for t in range(n_experiences)]

    def log_state(self) -> Dict[int, List[float]]:
        return {t: list(v) for t, v in self.penalty_log.items()}

    def load_log(self, state: Dict) -> None:
        self.penalty_log.update({int(t): list(v) for t, v in state.items()})


def param_tensors(params: Dict[str, ParamData]) -> Dict[str, Tensor]:
    """{name: ParamData} -> {name: tensor} (for ``method_state``)."""
    return {n: v.data for n, v in params.items()}


def param_datas(tensors: Dict[str, Tensor], prefix: str, device) -> Dict[str, ParamData]:
    """{name: tensor} -> {name: ParamData named prefix + name} (for ``load_method_state``)."""
    return {n: ParamData(f"{prefix}{n}", init_tensor=v.to(device)) for n, v in tensors.items()}


#: storage components of an episodic memory in ``method_state()["memory"]`` (``FeatureMemory.stored``)
MEMORY_COMPONENTS = tuple((f"method.memory.*.{part}*", f"memory_{part}") for part in ("inputs", "masks", "prompts"))


def stored_items(batch: Dict[str, Any], extra: Optional[Dict[str, Tensor]] = None) -> Dict[str, Any]:
    """What a deployed method keeps of a collated batch of buffered items: what the model starts
    from (``inputs``: the cached ``features`` at its tap as stored, or the uint8 ``image``), the masks
    at one bit per pixel, the point prompts as float32 (x, y, label), plus ``extra`` tensors
    (e.g. logits); ``loaded_items`` reads it back."""
    inputs = batch["features"] if "features" in batch else batch["image"]
    return {"inputs": inputs, "masks": pack_masks(batch["mask"]),
            "prompts": pack_prompts(batch["points"], batch["point_labels"]), **(extra or {})}


def loaded_items(stored: Dict[str, Any], mask_shape: List[int]) -> Dict[str, Any]:
    """The collated batch ``stored_items`` stored (masks of ``mask_shape``), extras included."""
    inputs, prompts = stored["inputs"], stored["prompts"]
    batch = {"features" if isinstance(inputs, dict) else "image": inputs,
             "mask": unpack_masks(stored["masks"], mask_shape).to(prompts.device),
             "points": prompts[..., :2].contiguous(), "point_labels": prompts[..., 2].contiguous()}
    batch.update({k: v for k, v in stored.items() if k not in ("inputs", "masks", "prompts")})
    return batch


class FeatureMemory(SeededDomainBuffer):
    """GEM's and A-GEM's episodic memory: replay's seeded choice of ``per_domain`` items of every
    finished domain, each domain's items kept as one collated batch on ``device`` (cached features
    at the method's tap, masks, prompts: what the training loader gives)."""

    def __init__(self, per_domain: int, n_domains: int, seed: int):
        super().__init__(per_domain, n_domains, seed)
        self.device = torch.device("cpu")  # the strategy's, from the first domain (or on resume) on
        self.batches: List[Dict[str, Any]] = []

    def post_adapt(self, agent, exp):
        self.device = agent.device
        super().post_adapt(agent, exp)

    def add_group(self, data, idx: List[int]) -> None:
        super().add_group(data, idx)
        group = self.groups[-1]
        self.batches.append(to_device(collate_samples([group[i] for i in range(len(group))]), self.device))

    def sample(self, size: int, generator: torch.Generator) -> Dict[str, Any]:
        """``size`` items drawn from the domains in equal shares (at least one each), as one batch."""
        share = max(1, size // len(self.batches))
        picks = [torch.randperm(len(b["mask"]), generator=generator)[:share] for b in self.batches]
        return concat_batches([select(b, p.to(b["mask"].device)) for b, p in zip(self.batches, picks)])

    def stored(self) -> List[Dict[str, Any]]:
        """Each finished domain's items as a deployed method keeps them (``stored_items``)."""
        return [stored_items(batch) for batch in self.batches]


def select(batch: Any, index: Tensor) -> Any:
    """The items ``index`` of a collated batch (tensors and nested dicts of tensors)."""
    if torch.is_tensor(batch):
        return batch[index]
    if isinstance(batch, dict):
        return {k: select(v, index) for k, v in batch.items()}
    return [batch[i] for i in index.tolist()]


def concat_batches(batches: List[Any]) -> Any:
    """Collated batches joined item-wise."""
    first = batches[0]
    if torch.is_tensor(first):
        return torch.cat(batches)
    if isinstance(first, dict):
        return {k: concat_batches([b[k] for b in batches]) for k in first}
    return [v for b in batches for v in b]


class MemoryProjection:
    """Mixin of the GEM / A-GEM plugins: an episodic ``FeatureMemory`` filled at each domain's end,
    and a training gradient (over the trainable parameters) replaced by ``project(g)`` when that
    returns one; ``projected`` logs 1 per projected step, else 0, per experience."""

    def __init__(self, memory: FeatureMemory, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.memory = memory
        self.projected: Dict[int, List[int]] = defaultdict(list)

    def project(self, g: Tensor) -> Optional[Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def after_backward(self, strategy, **kwargs):
        if not self.memory.batches:
            return
        params = list(strategy.named_trainable().values())
        new = self.project(flat_grad(params))
        if new is not None:
            set_flat_grad(params, new)
        self.projected[strategy.clock.train_exp_counter].append(int(new is not None))

    def after_training_exp(self, strategy, **kwargs):
        self.memory.post_adapt(strategy, strategy.experience)


class MemoryMethod:
    """Mixin of the gem / agem strategies around ``self.projector`` (a ``MemoryProjection`` plugin):
    the state (the memory's indices, its items as kept: ``MEMORY_COMPONENTS`` of the storage, and
    the projection log), the record's ``<method>_projected_fraction`` per domain. On resume the
    memory's items are re-taken from the finished domains' datasets by their indices."""

    def method_state(self) -> Dict[str, Any]:
        return {"memory_indices": [list(i) for i in self.projector.memory.indices],
                "memory": self.projector.memory.stored(),
                "projected": {t: list(v) for t, v in self.projector.projected.items()}}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        self.projector.memory.indices = [[int(j) for j in i] for i in state.get("memory_indices", [])]
        self.projector.projected.update({int(t): list(v) for t, v in state.get("projected", {}).items()})

    def on_resume(self, finished_experiences) -> None:
        # the memory's items are re-taken from the finished domains' datasets by their indices
        self.projector.memory.device = self.device
        for experience, idx in zip(finished_experiences, self.projector.memory.indices):
            self.projector.memory.add_group(experience.dataset, idx)

    def extra_record(self) -> Dict[str, Any]:
        log = self.projector.projected
        return {f"{self.method_name}_projected_fraction": [sum(log[t]) / max(len(log[t]), 1)
                                                           for t in range(self.clock.train_exp_counter)]}
