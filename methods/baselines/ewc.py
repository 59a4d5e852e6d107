"""EWC: Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017) on SAM's LoRA adapter.

The trainable parameters are those of ``lora`` (one peft LoRA, rank 10 on ``attn.qkv`` of encoder
blocks 7-11, tap ``block6``), so EWC is sequential LoRA plus the quadratic penalty
``lambda * sum_i F_i (theta_i - theta*_i)^2``.
It uses Avalanche's ``EWCPlugin`` (penalty, separate/online bookkeeping); the importance pass is
replaced (see ``SAMEWCPlugin``) and every dictionary is restricted to the trainable parameters, so
the frozen backbone is neither copied nor penalised.
"""
from __future__ import annotations

from typing import Any, Dict

import torch
from avalanche.training.plugins import EWCPlugin
from avalanche.training.utils import ParamData

from methods.baselines import _regularizers as reg
from methods.baselines.lora import LoRA
from benchmark.core.registry import register_method


class SAMEWCPlugin(reg.PenaltyLog, EWCPlugin):
    """EWCPlugin with an importance pass that runs the real SAM forward with prompts.

    The stock ``compute_importances`` calls ``model(batch[0])``, which cannot run a SAM batch (a
    dict of features, masks and prompts): here the diagonal empirical Fisher is the squared gradient
    of the strategy's own loss (``run_model`` + the shared SAM loss, per image) averaged over the
    domain's mini-batches, over the trainable parameters only.
    """

    def after_training_exp(self, strategy, **kwargs):
        t = strategy.clock.train_exp_counter
        fisher = reg.mean_grad_stat(strategy, strategy.experience.dataset, reg.seg_loss, torch.square)
        self.update_importances(reg.param_datas(fisher, "imp_", strategy.device), t)
        self.saved_params[t] = {n: ParamData(n, init_tensor=p.detach().clone())
                                for n, p in strategy.named_trainable().items()}
        if t > 0 and not self.keep_importance_data:
            del self.saved_params[t - 1]


@register_method("ewc")
class EWC(LoRA):
    """EWC (Kirkpatrick et al. 2017) on the same LoRA as lora, via Avalanche's EWCPlugin."""
    relative_cost = 1.2  # a run's time against lora's (the default benchmark's records)

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
        return {"importances": {t: reg.param_tensors(d) for t, d in self.ewc.importances.items()},
                "saved_params": {t: reg.param_tensors(d) for t, d in self.ewc.saved_params.items()},
                "penalty_log": self.ewc.log_state()}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        for key, prefix in (("importances", "imp_"), ("saved_params", "")):
            getattr(self.ewc, key).update({int(t): reg.param_datas(d, prefix, self.device)
                                           for t, d in state.get(key, {}).items()})
        self.ewc.load_log(state.get("penalty_log", {}))

    def extra_record(self) -> Dict:
        return {"ewc_weighted_penalty_mean": self.ewc.mean_penalties(self.clock.train_exp_counter)}

