"""Model merging by task arithmetic of per-domain LoRA deltas (the RegCL comparison family).

Per domain a fresh LoRA (B = 0) is trained on top of the model merged so far (as RegCL trains each
task's LoRA from the merged model); its dense delta ``tau_t = scaling * B_t A_t`` per wrapped layer
is the task vector. After each domain the task vectors are merged into ONE dense delta per layer,
written into the wrapped base weights (``W = W0 + merged``), and the LoRA is reset to zero.

Task arithmetic ``merged_t = lam * sum_i tau_i`` (``lam: mean`` = 1/t, the mean) is a running
sum, so only the merged dense delta is kept: constant storage of ``in x out`` fp32 per wrapped
layer (dense; larger than one LoRA, see the README's storage note).
"""
from typing import Any, Dict, List

import torch
from torch import Tensor

from methods.baselines._lora_common import LoRAStrategy, add_to_base, dense_deltas
from benchmark.core.registry import register_method


@register_method("merge_ta")
class MergeTA(LoRAStrategy):
    """Per-domain LoRA deltas merged by task arithmetic into one dense delta (constant storage)."""

    defaults = {"lam": "mean"}  # "mean" (1/t) or a number: merged = lam * sum of task vectors
    #: only the merged delta is kept; the reset LoRA (B = 0) is bookkeeping of the next domain
    storage_components = (("method.merged.*", "merged_delta"),)

    def build(self) -> None:
        super().build()
        lam = self.hp["lam"]
        if lam != "mean" and (isinstance(lam, bool) or not isinstance(lam, (int, float))):
            raise ValueError(f"method {self.method_name!r}: 'lam' must be 'mean' or a number, got {lam!r}")
        self.add_adapter("task")
        self.merged: Dict[str, Tensor] = {}
        self.lams: List[float] = []

    def scale(self, t: int) -> float:
        """lam for ``t`` merged task vectors."""
        return 1.0 / t if self.hp["lam"] == "mean" else float(self.hp["lam"])

    def merge(self, tau: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """The new merged delta per layer from the previous one and this domain's task vector."""
        t = self.domain_index + 1
        lam, prev = self.scale(t), (self.scale(t - 1) if t > 1 else 0.0)
        # running sum: sum_{i<t} tau_i = merged_{t-1} / lam_{t-1}
        return {k: lam * ((self.merged[k] / prev if prev else 0.0) + tau[k]) for k in tau}

    def after_domain(self, experience) -> None:
        tau = dense_deltas(self.layers, "task")
        new = self.merge(tau)
        with torch.no_grad():
            for layer in self.layers.values():  # fresh LoRA for the next domain: B = 0, new A
                layer.reset_lora_parameters("task", True)
        old = self.merged or {k: torch.zeros_like(v) for k, v in new.items()}
        add_to_base(self.layers, {k: new[k] - old[k] for k in new})
        self.merged = new
        self.lams.append(self.scale(self.domain_index + 1))

    def method_state(self) -> Dict[str, Any]:
        return {"merged": dict(self.merged), "lams": list(self.lams)}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        """Restore the merged delta and write it into the fresh backbone's base weights (they
        are not part of ``self.parts``; the LoRA factors are)."""
        self.merged = {k: v.to(self.device) for k, v in state.get("merged", {}).items()}
        self.lams = [float(v) for v in state.get("lams", [])]
        add_to_base(self.layers, self.merged)

    def extra_record(self) -> Dict[str, Any]:
        return {"merge_lam": list(self.lams)}
