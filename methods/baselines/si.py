"""SI: Synaptic Intelligence (Zenke, Poole & Ganguli, ICML 2017) on SAM's LoRA adapter.

The trainable parameters are those of ``lora`` (one peft LoRA, rank 10 on ``attn.qkv`` of encoder
blocks 7-11, tap ``block6``). Avalanche's ``SynapticIntelligencePlugin`` keeps, along each domain's
training path, the running sum of gradient x parameter update of every trainable parameter; at the
domain's end the importance is that path integral over the squared total change, and later domains
add ``lambda/2 * sum_i Omega_i (theta_i - theta*_i)^2`` to the loss. The gradients it integrates are
those of the harness's training steps (the shared SAM loss on the domain's cached-feature batches,
plus the SI penalty itself), so no extra pass is needed; the plugin only sees parameters with
``requires_grad`` (the frozen backbone is skipped). As in Avalanche, importances are clipped at
0.001 (its ``update_ewc_data(clip_to=0.001, c=1)``, from Maltoni & Lomonaco's SI implementation).
"""
from __future__ import annotations

from typing import Any, Dict

import torch
from avalanche.training.plugins import SynapticIntelligencePlugin

from methods.baselines import _regularizers as reg
from methods.baselines.lora import LoRA
from benchmark.core.registry import register_method

#: the per-parameter dictionaries a resumed run needs: anchors and importances, and the path
#: integral accumulated over all finished domains (the others are rebuilt at each domain's start)
SI_STATE = {"anchors": ("ewc_data", 0), "importances": ("ewc_data", 1),
            "cum_trajectory": ("syn_data", "cum_trajectory")}


class _TrainableSI(SynapticIntelligencePlugin):
    """The stock plugin's per-step hooks, the same arithmetic in the same order, over the
    strategy's trainable parameters. The stock ones find their parameters with Avalanche's
    ``get_layers_and_params``, a recursive walk quadratic in the number of modules, three times per
    step: on SAM that walk took 64 of a 125 s SI run (cProfile), more than training itself.
    """

    def before_backward(self, strategy, **kwargs):
        exp, lambdas = strategy.clock.train_exp_counter, self.si_lambda
        lambd = lambdas[exp] if exp < len(lambdas) else lambdas[-1]
        device, loss = self.device(strategy), None
        for name, param in strategy.named_trainable().items():
            anchors = self.ewc_data[0][name].data.to(device)
            importance = self.ewc_data[1][name].data.to(device)
            term = torch.dot(importance, (param.to(device).flatten() - anchors) ** 2) * (lambd / 2)
            loss = term if loss is None else loss + term
        if loss is not None:
            strategy.loss += loss.to(strategy.device)

    def after_training_iteration(self, strategy, **kwargs):
        syn = self.syn_data
        with torch.no_grad():
            for name, param in strategy.named_trainable().items():
                syn["new_theta"][name].data = param.detach().cpu().flatten()
                syn["grad"][name].data = param.grad.detach().cpu().flatten()
            for name in syn["trajectory"]:
                syn["trajectory"][name].data += syn["grad"][name].data * (
                    syn["new_theta"][name].data - syn["old_theta"][name].data)


class SAMSIPlugin(reg.PenaltyLog, _TrainableSI):
    """SynapticIntelligencePlugin with a penalty log, keeping copies of the weights it compares.

    Its path integral already reads the harness's training gradients (strategy.loss is the SAM
    loss). But the stock plugin keeps ``param.detach().cpu().flatten()``, which on a CPU run is a
    view of the parameter itself: the weights before a step and the domain's anchors would follow
    the parameter, so the path integral and the penalty would stay 0. Here they are copies.
    """

    @staticmethod
    @torch.no_grad()
    def keep_copies(strategy, target) -> None:
        for name, p in strategy.named_trainable().items():
            target[name].data = p.detach().flatten().cpu().clone()

    def before_training_exp(self, strategy, **kwargs):
        super().before_training_exp(strategy, **kwargs)
        self.keep_copies(strategy, self.ewc_data[0])   # the anchors of this domain's penalty

    def before_training_iteration(self, strategy, **kwargs):
        self.keep_copies(strategy, self.syn_data["old_theta"])  # the weights before the step


@register_method("si")
class SI(LoRA):
    """Synaptic Intelligence (Zenke et al. 2017) on the same LoRA as lora, via Avalanche's plugin."""
    relative_cost = 1.1  # a run's time against lora's (the default benchmark's records)

    storage_components = LoRA.storage_components + (
        ("method.anchors.*", "si_old_parameters"), ("method.importances.*", "si_importances"),
        ("method.cum_trajectory.*", "si_path_integral"))

    defaults = {
        # Importances are clipped at 0.001 per parameter and the task loss is summed over the batch
        # (~5 per image), so lambda is far above the 0.1-1 of classification papers. Measured on
        # the built-in stream (seed 1234, 3 epochs, 12 training images per domain; lora: AA 43.21 /
        # FM 15.76), AA / FM (SAMCL) by lambda: 1e3 -> 48.94 / 7.36, 1e4 -> 46.36 / 7.07, 3e4 ->
        # 47.45 / 2.31, 1e5 -> 45.72 / 0.33, 3e5 -> 44.87 / 0.19. 3e4 cuts 1e3's forgetting by
        # two thirds for 1.5 points of AA (the penalty is then about 15 * ||theta - theta*||^2 where
        # the path integral is large); it was the choice on the stream's former 24/12 images too.
        "si_lambda": 3e4,
        "si_eps": 1e-7,             # damping xi of the importance's denominator (Avalanche's default)
    }

    def make_plugins(self) -> list:
        self.si = SAMSIPlugin(float(self.hp["si_lambda"]), eps=float(self.hp["si_eps"]))
        return [self.si]

    def si_dicts(self):
        """{state name: the plugin's {parameter name: ParamData}}."""
        return {key: getattr(self.si, attr)[index] for key, (attr, index) in SI_STATE.items()}

    def method_state(self) -> Dict[str, Any]:
        """The plugin's anchors, importances and cumulated path integral, and its penalty log."""
        state = {key: reg.param_tensors(d) for key, d in self.si_dicts().items()}
        return {**state, "penalty_log": self.si.log_state()}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        if not state.get("anchors"):
            return
        SynapticIntelligencePlugin.create_syn_data(self.model, self.si.ewc_data, self.si.syn_data,
                                                   self.si.excluded_parameters)
        for key, d in self.si_dicts().items():
            for name, tensor in state[key].items():
                d[name].data = tensor.clone()
        self.si.load_log(state.get("penalty_log", {}))

    def extra_record(self) -> Dict:
        return {"si_weighted_penalty_mean": self.si.mean_penalties(self.clock.train_exp_counter)}
