"""EWC: Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017) on SAM's LoRA adapter.

The trainable parameters are those of ``lora`` (one peft LoRA, rank 10 on ``attn.qkv`` of encoder
blocks 7-11, tap ``block6``), so EWC is sequential LoRA plus the quadratic penalty
``lambda * sum_i F_i (theta_i - theta*_i)^2``.
It uses Avalanche's ``EWCPlugin`` (penalty, separate/online bookkeeping); the importance pass is
replaced (see ``SAMEWCPlugin``) and every dictionary is restricted to the trainable parameters, so
the frozen backbone is neither copied nor penalised.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, List

import torch
from avalanche.training.plugins import EWCPlugin
from avalanche.training.utils import ParamData

from methods.baselines.lora import LoRA
from benchmark.core.registry import register_method
from scenarios.stream import to_device


class SAMEWCPlugin(EWCPlugin):
    """EWCPlugin with an importance pass that runs the real SAM forward with prompts.

    The stock ``compute_importances`` calls ``model(batch[0])``, which cannot run a SAM batch (a
    dict of features, masks and prompts): here the diagonal empirical Fisher is the squared gradient
    of the strategy's own loss (``run_model`` + the shared SAM loss, per image) averaged over the
    domain's mini-batches, over the trainable parameters only.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.penalty_log: Dict[int, List[float]] = defaultdict(list)  # lambda * penalty per step

    def before_backward(self, strategy, **kwargs):
        task_loss, strategy.loss = strategy.loss, torch.zeros((), device=strategy.device)
        super().before_backward(strategy, **kwargs)  # adds lambda * penalty to the zero
        self.penalty_log[strategy.clock.train_exp_counter].append(float(strategy.loss.detach()))
        strategy.loss = task_loss + strategy.loss

    def after_training_exp(self, strategy, **kwargs):
        t = strategy.clock.train_exp_counter
        self.update_importances(self.sam_importances(strategy), t)
        self.saved_params[t] = {n: ParamData(n, init_tensor=p.detach().clone())
                                for n, p in strategy.named_trainable().items()}
        if t > 0 and not self.keep_importance_data:
            del self.saved_params[t - 1]

    def sam_importances(self, strategy) -> Dict[str, ParamData]:
        params = strategy.named_trainable()
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        dataset = strategy.experience.dataset
        loader = torch.utils.data.DataLoader(dataset, batch_size=strategy.train_mb_size,
                                             collate_fn=getattr(dataset, "collate_fn", None))
        was_training = strategy.model.training
        strategy.model.eval()
        n_batches = 0
        for batch in loader:
            batch = to_device(batch, strategy.device)
            strategy.model.zero_grad(set_to_none=True)
            low_res, iou_pred = strategy.run_model(batch)
            loss = strategy.sam_loss_of(low_res, iou_pred, batch["mask"]) / len(batch["mask"])
            loss.backward()
            for n, p in params.items():
                if p.grad is not None:
                    fisher[n] += p.grad.detach() ** 2
            n_batches += 1
        strategy.model.zero_grad(set_to_none=True)
        strategy.model.train(was_training)
        return {n: ParamData(f"imp_{n}", init_tensor=f / max(n_batches, 1)) for n, f in fisher.items()}


@register_method("ewc")
class EWC(LoRA):
    """EWC (Kirkpatrick et al. 2017) on the same LoRA as lora, via Avalanche's EWCPlugin."""

    defaults = {
        # The task loss is summed over the batch (~5 per image at the start of a domain) while the
        # Fisher is the squared gradient of the per-image loss, so lambda is larger than the
        # 0.4-100 used with mean-reduced classification losses.
        "ewc_lambda": 1000.0,
        "ewc_mode": "separate",   # separate (one penalty per past domain) | online
        "ewc_decay": 1.0,          # online mode only: importance decay factor
    }
    storage_components = LoRA.storage_components + (
        ("method.importances.*", "ewc_importances"), ("method.saved_params.*", "ewc_old_parameters"))

    def make_plugins(self) -> list:
        mode = self.hp["ewc_mode"]
        if mode not in ("separate", "online"):
            raise ValueError(f"ewc: ewc_mode must be 'separate' or 'online', got {mode!r}")
        self.ewc = SAMEWCPlugin(float(self.hp["ewc_lambda"]), mode=mode,
                                decay_factor=float(self.hp["ewc_decay"]) if mode == "online" else None)
        return [self.ewc]

    def sam_loss_of(self, low_res, iou_pred, masks) -> torch.Tensor:
        from benchmark.core.losses import sam_loss

        return sam_loss(self.upscale(low_res), iou_pred, masks,
                        dice_weight=float(self.hp["dice_weight"]), iou_loss=self.iou_loss)

    def penalty(self) -> float:
        """The current EWC penalty (without lambda), for inspection and tests."""
        t = self.clock.train_exp_counter
        done = range(t) if self.ewc.mode == "separate" else [t - 1] if t else []
        total = 0.0
        params = self.named_trainable()
        for e in done:
            for n, p in params.items():
                if n in self.ewc.saved_params[e]:
                    imp, old = self.ewc.importances[e][n].data, self.ewc.saved_params[e][n].data
                    total += float((imp * (p.detach() - old) ** 2).sum())
        return total

    def method_state(self) -> Dict[str, Any]:
        """The plugin's importances and anchors per finished domain, and its penalty log."""
        def tensors(per_exp) -> Dict[int, Dict[str, torch.Tensor]]:
            return {t: {n: v.data for n, v in d.items()} for t, d in per_exp.items()}

        return {"importances": tensors(self.ewc.importances), "saved_params": tensors(self.ewc.saved_params),
                "penalty_log": {t: list(v) for t, v in self.ewc.penalty_log.items()}}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        def params(per_exp, prefix: str):
            return {int(t): {n: ParamData(f"{prefix}{n}", init_tensor=v.to(self.device)) for n, v in d.items()}
                    for t, d in per_exp.items()}

        self.ewc.importances.update(params(state.get("importances", {}), "imp_"))
        self.ewc.saved_params.update(params(state.get("saved_params", {}), ""))
        self.ewc.penalty_log.update({int(t): list(v) for t, v in state.get("penalty_log", {}).items()})

    def extra_record(self) -> Dict:
        logs = self.ewc.penalty_log
        return {"ewc_weighted_penalty_mean": [sum(logs[t]) / len(logs[t]) if logs[t] else 0.0
                                              for t in range(self.clock.train_exp_counter)]}

