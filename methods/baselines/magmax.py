"""MagMax (Marczak et al. 2024) as RegCL runs it (github.com/VDIGPKU/RegCL, ``train_comp_mag.py`` then
``merging/magmax_merging.py``): sequentially fine-tuned per-domain adapters merged by task vectors.

Training as ``merge_mean`` with ``training: sequ`` (``train_comp_mag.py``'s default: each domain
fine-tunes the previous domain's fine-tuned adapter). The task vector of domain i is its fine-tuned
adapter minus the initial one (RegCL's ``init.pth``); after domain t the merged adapter is
``init + scale * merge(tau_1..tau_t)`` (``save_incremental_merge``), with ``variant``:

- ``max_abs`` (default): per entry the task-vector entry of largest magnitude (``merge_max_abs``),
  scale 0.5;
- ``rnd_mix``: per entry the entry of a uniformly drawn task vector (``merge_rnd_mix``), scale 1.0.
  Drawn as a fold (entry from domain t with probability 1/t, else the previous mix's): the same
  distribution per merge as RegCL's fresh draw over all kept vectors, without keeping them.

(``scale`` overrides the variant's: a number, or "variant".) Storage: the merged adapter, the
initial adapter, the last fine-tuned one and the running merged task vector: constant.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor

from benchmark.core.registry import register_method
from methods.baselines._merging import MAGMAX_SCALE, max_abs_step, rnd_mix_step
from methods.baselines.merge_mean import MergeMean, merge_components


@register_method("magmax")
class MagMax(MergeMean):
    """MagMax: max-magnitude (or random) mixing of sequential fine-tuning's task vectors."""

    defaults = {"variant": "max_abs", "scale": "variant"}
    choices = {"variant": tuple(MAGMAX_SCALE)}
    storage_components = merge_components("init", "last", "merged_tv")

    def build(self) -> None:
        super().build()
        scale = self.hp["scale"]
        if scale != "variant" and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
            raise ValueError(f"method {self.method_name!r}: 'scale' must be 'variant' or a number, got {scale!r}")

    def needs_init(self) -> bool:
        return True

    def scale(self) -> float:
        value = self.hp["scale"]
        return MAGMAX_SCALE[self.hp["variant"]] if value == "variant" else float(value)

    def fold(self, tuned: Dict[str, Tensor], experience) -> None:
        init = self.kept["init"]
        tau = {k: v - init[k] for k, v in tuned.items()}
        merged = self.kept.get("merged_tv")
        if merged is None:
            self.kept["merged_tv"] = tau
        elif self.hp["variant"] == "max_abs":
            self.kept["merged_tv"] = {k: max_abs_step(merged[k], v) for k, v in tau.items()}
        else:
            g = torch.Generator().manual_seed(self.seed * 1000 + self.domain_index)
            self.kept["merged_tv"] = {k: rnd_mix_step(merged[k], v, self.count, g) for k, v in tau.items()}

    def merged(self) -> Dict[str, Tensor]:
        init, scale = self.kept["init"], self.scale()
        return {k: init[k] + scale * v for k, v in self.kept["merged_tv"].items()}

    def extra_record(self):
        return {**super().extra_record(), "magmax_scale": self.scale()}
