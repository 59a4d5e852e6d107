"""LwF: Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017) for SAM's mask logits.

The trained parameters are those of ``lora`` (rank-10 LoRA on blocks 7-11, tap ``block6``).
Before each new domain a frozen copy of them (the LoRA factors, never the backbone) is kept as the
teacher. Training adds
``alpha * KL(Bernoulli(sigmoid(teacher / T)) || Bernoulli(sigmoid(student / T)))`` on the low-res
mask logits (per pixel, mean over pixels, summed over the batch like the task loss); the KL is the
BCE against the teacher's soft mask minus its (constant) entropy, so it is 0 when they agree.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from avalanche.training import LearningWithoutForgetting
from avalanche.training.plugins import LwFPlugin
from torch import nn

from methods.baselines.lora import LoRA
from benchmark.core.registry import register_method


def bernoulli_kd(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-pixel KL between Bernoulli(sigmoid(teacher/T)) and Bernoulli(sigmoid(student/T)),
    mean over pixels, summed over the batch."""
    q = torch.sigmoid(teacher / temperature)
    kl = (F.binary_cross_entropy_with_logits(student / temperature, q, reduction="none")
          - F.binary_cross_entropy_with_logits(teacher / temperature, q, reduction="none"))
    return kl.flatten(1).mean(1).sum()


class _RunModel(nn.Module):
    """``strategy.run_model`` as a module forward, so ``torch.func.functional_call`` can run it with
    the teacher's parameter values in place of the student's."""

    def __init__(self, strategy):
        super().__init__()
        self.model = strategy.model
        self._strategy = [strategy]  # a list: not registered as a submodule

    def forward(self, batch):
        return self._strategy[0].run_model(batch)


class MaskLogitLwF(LearningWithoutForgetting):
    """Avalanche's LwF distils softmax class logits over the "active units" of past classes and
    deep-copies the whole model; here it distils per-pixel mask logits (Bernoulli KD) and the
    teacher is a copy of the trainable parameters only."""

    def __init__(self, alpha: float, temperature: float):
        super().__init__(alpha, temperature)
        self.prev_model: Optional[Dict[str, torch.Tensor]] = None

    def _lwf_penalty(self, out, batch, strategy):
        if self.prev_model is None:
            return 0
        with torch.no_grad():
            teacher = self.teacher_logits(strategy, batch)
        return bernoulli_kd(out[0], teacher, float(self.temperature))

    def teacher_logits(self, strategy, batch) -> torch.Tensor:
        params = {f"model.{n}": t for n, t in self.prev_model.items()}
        # tie_weights=False: a trained module reachable by two paths (backbone.sam.mask_decoder and
        # parts.mask_decoder) is swapped once under its first name; with ties it would be swapped
        # twice and not restored.
        return torch.func.functional_call(_RunModel(strategy), params, (batch,), tie_weights=False,
                                          strict=False)[0]

    def post_adapt(self, agent, exp):
        self.expcount += 1
        self.prev_model = {n: p.detach().clone() for n, p in agent.named_trainable().items()}


class SAMLwFPlugin(LwFPlugin):
    """``LwFPlugin`` that hands the regulariser the whole SAM batch and the strategy (the stock
    plugin passes ``mb_x`` and the model, which cannot run a prompted SAM forward)."""

    def __init__(self, alpha: float, temperature: float):
        super().__init__(alpha, temperature)
        self.lwf = MaskLogitLwF(alpha, temperature)
        self.penalty_log: Dict[int, List[float]] = defaultdict(list)  # alpha * KD per step

    def before_backward(self, strategy, **kwargs):
        penalty = self.lwf(strategy.mbatch, strategy.mb_output, strategy)
        value = float(penalty.detach()) if torch.is_tensor(penalty) else float(penalty)
        self.penalty_log[strategy.clock.train_exp_counter].append(value)
        strategy.loss += penalty


@register_method("lwf")
class LwF(LoRA):
    """Learning without Forgetting: distillation of the previous model's mask logits."""
    relative_cost = 1.2  # a run's time against lora's (the default benchmark's records)

    defaults = {"lwf_alpha": 1.0, "lwf_temperature": 2.0}
    storage_components = LoRA.storage_components + (("method.teacher.*", "teacher_copy"),)

    def make_plugins(self) -> list:
        t = float(self.hp["lwf_temperature"])
        if t <= 0:
            raise ValueError(f"lwf: lwf_temperature must be positive, got {t}")
        self.lwf = SAMLwFPlugin(float(self.hp["lwf_alpha"]), t)
        return [self.lwf]

    def method_state(self) -> Dict[str, Any]:
        """The teacher (a copy of the trained LoRA factors), the experience count and the KD log."""
        lwf = self.lwf.lwf
        return {"teacher": lwf.prev_model, "expcount": lwf.expcount,
                "penalty_log": {t: list(v) for t, v in self.lwf.penalty_log.items()}}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        teacher = state.get("teacher")
        lwf = self.lwf.lwf
        lwf.prev_model = None if teacher is None else {n: t.to(self.device) for n, t in teacher.items()}
        lwf.expcount = int(state.get("expcount", 0))
        self.lwf.penalty_log.update({int(t): list(v) for t, v in state.get("penalty_log", {}).items()})

    def extra_record(self) -> Dict:
        logs = self.lwf.penalty_log
        return {"lwf_weighted_distillation_mean": [sum(logs[t]) / len(logs[t]) if logs[t] else 0.0
                                                   for t in range(self.clock.train_exp_counter)]}

