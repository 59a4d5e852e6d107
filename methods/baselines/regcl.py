"""RegCL (Shu et al. 2025, arXiv 2507.12297; github.com/VDIGPKU/RegCL, ``train_regcl.py``): per-domain
adapters merged progressively by RegMean.

Training as ``merge_mean`` (RegCL's ``run_experiments.py``: ``--meth sequ``, each domain starts
from the previous domain's fine-tuned adapter). After domain t, one forward pass over its training
images with the fine-tuned adapter gives, for every RegMean layer (LoRA's A and B; the AugModule's
A and B), the Gram matrix of the layer's inputs ``G_t = X^T X / n`` over all its tokens (RegCL's
``compute_gram``, merging/inner_product.py, run on the domain's train loader). The merged adapter
after domain t is RegCL's ``avg_merge(models 1..t, grams 1..t)`` (``regmean_merge``):

    W* = ((sum_i G_i)^-1 sum_i G_i W_i^T)^T   for every RegMean layer's weight,
    the plain mean of the domains' values     for every other parameter (biases, LayerNorms, ...).

``regmean_alpha`` scales the Gram matrices' off-diagonal entries first (RegMean's regularisation,
RegCL's ``reduce_non_diag``); RegCL's call of it is commented out, so the default is 1.0 (none).
Instead of every domain's adapter and Gram matrices (as RegCL keeps), the two running sums
``sum G_i`` and ``sum G_i W_i^T`` per layer are kept (the same merge): storage is the merged
adapter, those sums (``kept_gram_sum``, ``kept_gram_w_sum``), the running sum of the other
parameters and the last fine-tuned adapter, constant in the number of domains.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from benchmark.core.registry import register_method
from methods.baselines._merging import gram_update, regmean_solve, regmean_sums
from methods.baselines.merge_mean import MergeMean, merge_components
from scenarios.stream import collate_samples, to_device


@register_method("regcl")
class RegCL(MergeMean):
    """RegCL: per-domain adapters merged by RegMean with running Gram-matrix sums."""

    defaults = {"regmean_alpha": 1.0}  # off-diagonal scale of the Gram matrices (1: none, as RegCL)
    storage_components = merge_components("init", "last", "gram_sum", "gram_w_sum", "mean_sum")

    def build(self) -> None:
        super().build()
        alpha = float(self.hp["regmean_alpha"])
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"method {self.method_name!r}: 'regmean_alpha' must be in [0, 1], got {alpha}")

    @torch.no_grad()
    def domain_grams(self, dataset) -> Dict[str, Tensor]:
        """{weight name: Gram matrix of the layer's inputs} over every token of ``dataset`` with
        the adapter as it is (one forward pass of the adapted blocks, no decoder)."""
        grams: Dict[str, Tensor] = {}
        counts: Dict[str, int] = {}

        def hook_for(name):
            def hook(_module, args, _output):
                grams[name], counts[name] = gram_update(grams.get(name), counts.get(name, 0), args[0])
            return hook

        handles = [m.register_forward_hook(hook_for(n)) for n, m in self.gram_layers().items()]
        was_training = self.model.training
        self.model.eval()
        try:
            loader = DataLoader(dataset, batch_size=int(self.hp["eval_batch_size"]),
                                collate_fn=collate_samples)
            for batch in loader:
                batch = to_device(batch, self.device)
                self.encode(self.backbone_features(batch), batch)
        finally:
            for h in handles:
                h.remove()
            self.model.train(was_training)
        return grams

    def regmean_fold(self, tuned: Dict[str, Tensor], grams: Dict[str, Tensor]) -> None:
        """Add one adapter (with its Gram matrices) to the running sums."""
        alpha = float(self.hp["regmean_alpha"])
        g_sum, gw_sum = self.kept.setdefault("gram_sum", {}), self.kept.setdefault("gram_w_sum", {})
        rest = self.kept.setdefault("mean_sum", {})
        for name, value in tuned.items():
            if name in grams:
                start = (g_sum[name], gw_sum[name]) if name in g_sum else None
                g_sum[name], gw_sum[name] = regmean_sums([grams[name]], [value], alpha, start)
            else:
                rest[name] = value.clone() if name not in rest else rest[name] + value

    def fold(self, tuned: Dict[str, Tensor], experience) -> None:
        self.regmean_fold(tuned, self.domain_grams(experience.dataset))

    def merged(self) -> Dict[str, Tensor]:
        out = {k: regmean_solve(g, self.kept["gram_w_sum"][k]) for k, g in self.kept["gram_sum"].items()}
        out.update({k: v / self.count for k, v in self.kept["mean_sum"].items()})
        return out
