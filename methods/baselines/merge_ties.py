"""Model merging of per-domain LoRA deltas by TIES (trim, elect sign, disjoint mean).

As ``merge_ta``: a fresh LoRA per domain, trained on top of the merged model; its dense delta
``scaling * B A`` is the task vector. TIES needs every task vector (its trim and sign election
are not a running sum), so each domain's LoRA factors are kept (growing by one LoRA per domain)
and, after each domain, all task vectors are TIES-merged (trim per task vector over all wrapped
layers together) into one dense delta per layer, written into the base weights. Storage: the
kept LoRA factors plus the merged dense delta.
"""
from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor

from methods.baselines._lora_common import ties_merge
from methods.baselines.merge_ta import MergeTA
from benchmark.core.registry import register_method


@register_method("merge_ties")
class MergeTIES(MergeTA):
    """Per-domain LoRA deltas TIES-merged into one dense delta after each domain."""

    defaults = {"lam": 1.0, "density": 0.2}  # TIES: scale of the merged vector, fraction kept
    storage_components = MergeTA.storage_components + (("method.factors.*", "task_loras"),)

    def build(self) -> None:
        super().build()
        self.factors: List[Dict[str, Tuple[Tensor, Tensor, float]]] = []  # per domain: (A, B, scaling)

    def scale(self, t: int) -> float:
        return float(self.hp["lam"])

    def merge(self, tau: Dict[str, Tensor]) -> Dict[str, Tensor]:
        self.factors.append({k: (layer.lora_A["task"].weight.detach().clone(),
                                 layer.lora_B["task"].weight.detach().clone(), layer.scaling["task"])
                             for k, layer in self.layers.items()})
        keys = list(tau)
        vectors = [torch.cat([(s * (b @ a)).flatten() for a, b, s in (f[k] for k in keys)])
                   for f in self.factors]
        flat = ties_merge(vectors, float(self.hp["density"]), float(self.hp["lam"]))
        out, start = {}, 0
        for k in keys:
            out[k] = flat[start:start + tau[k].numel()].view_as(tau[k])
            start += tau[k].numel()
        return out

    def method_state(self) -> Dict[str, Any]:
        return {**super().method_state(), "factors": list(self.factors)}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        super().load_method_state(state)
        self.factors = [{k: (a.to(self.device), b.to(self.device), float(s)) for k, (a, b, s) in f.items()}
                        for f in state.get("factors", [])]

