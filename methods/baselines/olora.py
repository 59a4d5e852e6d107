"""O-LoRA (Wang et al. 2023): a new LoRA per domain, orthogonal to the earlier domains' subspaces.

Domain t trains adapter ``d{t}`` (earlier adapters frozen but active) with the loss
``sam_loss + lambda_orth * sum_i sum |A_i A_t^T| + lambda_l2 * (|A_t|^2 + |B_t|^2)``, summed over
the wrapped layers and the earlier adapters i. At test time all adapters are active together
(their outputs summed; no selector). peft's multi-adapter layers hold the adapters (one LoRA
Linear per projection with one A/B pair per domain). Storage grows by one adapter per domain.
"""
from typing import Any, Dict

import torch

from methods.baselines._lora_common import LoRAStrategy
from benchmark.core.registry import register_method


@register_method("olora")
class OLoRA(LoRAStrategy):
    """O-LoRA: one LoRA per domain with an orthogonality penalty, all summed at test time."""

    defaults = {"lambda_orth": 0.5, "lambda_l2": 0.0}
    storage_components = (("parts.lora.*", "lora_adapters"),)  # every domain's adapter

    def before_domain(self, experience) -> None:
        self.add_adapter(f"d{self.domain_index}")

    def penalty(self) -> torch.Tensor:
        new = self.adapters[-1]
        total = torch.zeros((), device=self.device)
        for layer in self.layers.values():
            a_new = layer.lora_A[new].weight
            for old in self.adapters[:-1]:
                total = total + float(self.hp["lambda_orth"]) * (layer.lora_A[old].weight @ a_new.T).abs().sum()
            if float(self.hp["lambda_l2"]):
                total = total + float(self.hp["lambda_l2"]) * (
                    a_new.pow(2).sum() + layer.lora_B[new].weight.pow(2).sum())
        return total

    def criterion(self):
        return super().criterion() + self.penalty()

    def method_state(self) -> Dict[str, Any]:
        return {"adapters": list(self.adapters)}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        # The earlier domains' adapters are re-created (fresh factors) before the parts'
        # state, which holds their trained values, is loaded into them.
        for name in state.get("adapters", []):
            if name not in self.adapters:
                self.add_adapter(name)

    def extra_record(self) -> Dict[str, Any]:
        return {"adapters": list(self.adapters)}
