"""DOP merging as RegCL runs it (github.com/VDIGPKU/RegCL, ``merging/dop.py`` on the checkpoints of
``train_comp_mag.py``): sequentially fine-tuned per-domain adapters merged pairwise, in order.

Training as ``merge_mean`` with ``training: sequ``. After domain t the merged adapter is
``dop_pair(init, merged_{t-1}, tuned_t)`` (RegCL's ``merge_tensors_dop`` folds the domains in order
with ``merge_pair_tensors_dop``; merged_1 = tuned_1): every 2-D weight is optimised by
``optimize_weight_dop`` (start from the pair's mean; ``dop_steps`` Adam steps of ``dop_lr`` on the
two task vectors' SVD-projection losses, weighted by MGDA's min-norm solution smoothed by an EMA),
every other parameter is the pair's mean. RegCL's ``DOPConfig`` defaults: lr 1e-4, 200 steps,
MGDA and EMA on (beta 0.99), alpha 0.5, svd_epsilon 1.0, projection space "uv". Storage: the
merged adapter, the initial adapter and the last fine-tuned one: constant.
"""
from __future__ import annotations

from typing import Any, Dict

from torch import Tensor

from benchmark.core.registry import register_method
from methods.baselines._merging import DOP_DEFAULTS, dop_pair
from methods.baselines.merge_mean import MergeMean, merge_components


@register_method("dop")
class DOP(MergeMean):
    """DOP: pairwise projection-loss optimisation of each weight, domain after domain."""

    defaults = {f"dop_{k}": v for k, v in DOP_DEFAULTS.items()}
    choices = {"dop_proj_space": ("u", "v", "uv")}
    storage_components = merge_components("init", "last")

    def build(self) -> None:
        super().build()
        for key in ("dop_alpha", "dop_svd_epsilon", "dop_ema_beta"):
            if not 0.0 <= float(self.hp[key]) <= 1.0:
                raise ValueError(f"method {self.method_name!r}: {key!r} must be in [0, 1], got {self.hp[key]}")
        if int(self.hp["dop_num_steps"]) < 0 or float(self.hp["dop_lr"]) <= 0:
            raise ValueError(f"method {self.method_name!r}: 'dop_num_steps' must be >= 0 and 'dop_lr' > 0")

    def needs_init(self) -> bool:
        return True

    def options(self) -> Dict[str, Any]:
        return {k: self.hp[f"dop_{k}"] for k in DOP_DEFAULTS}

    def fold(self, tuned: Dict[str, Tensor], experience) -> None:
        self._merged = dict(tuned) if self.count == 1 else dop_pair(
            self.kept["init"], self.previous_merge, tuned, **self.options())

    def merged(self) -> Dict[str, Tensor]:
        return self._merged
