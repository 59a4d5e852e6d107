"""Plain averaging of per-domain adapters: RegCL's "fuse" (merging/fuse.py, ``--method mean``), and
the base of RegCL's merging family (``regcl``, ``magmax``, ``dop``, ``replay_merge``).

Training follows RegCL's ``train_regcl.py`` / ``train_comp_mag.py``: each domain fine-tunes the
adapter from the previous domain's *fine-tuned* (not merged) adapter (``training: sequ``, the mode
of RegCL's ``run_experiments.py``) or from the initial adapter (``training: indi``, the argparse
default of ``train_regcl.py``). After each domain the fine-tuned adapter is folded into the merge
state and the merged adapter is loaded for evaluation (RegCL evaluates ``merged_<domain>.pth``).
Merging works on the adapter's own parameters, as RegCL's (LoRA's A and B, not dense deltas).

``adapter: lora`` (default) is the project's peft LoRA (rank 10 on ``attn.qkv`` of blocks 7-11,
as ``lora``; RegCL's own LoRA adds to the whole attention's output, ``module/LoRA.py``);
``adapter: augmodule`` is SAMCL's AugModule (``methods/samcl/augmodule.py``, always active), which
RegCL's scripts default to (``--module AugModule``; RegCL's variant has one more r x r linear,
``C``, per block). ``rank`` sets either; ``alpha`` and ``targets`` are the LoRA's only.

``merge_mean`` keeps the running sum of the fine-tuned adapters: merged = sum / t (fuse's mean,
every parameter). Storage: the merged adapter, the running sum, the last fine-tuned adapter
(``sequ``) or the initial one (``indi``): constant in the number of domains.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import Tensor, nn

from benchmark.core.registry import register_method
from methods.baselines._lora_common import LoRAStrategy
from methods.samcl.augmodule import ModuleSet, config_for_backbone

ADAPTER = "task"


def merge_components(*kept: str) -> tuple:
    """``storage_components`` of a merge method: the merged adapter (``parts``) and the pieces of
    merge state it keeps (``method.kept.<piece>``: component ``kept_<piece>``)."""
    return (("parts.*", "merged_adapter"),) + tuple((f"method.kept.{k}.*", f"kept_{k}") for k in kept)


@register_method("merge_mean")
class MergeMean(LoRAStrategy):
    """Per-domain adapters (LoRA or AugModule) merged by plain averaging (RegCL's fuse)."""

    defaults = {"adapter": "lora", "training": "sequ"}
    choices = {"adapter": ("lora", "augmodule"), "training": ("sequ", "indi")}
    #: the merged adapter (the live parts) and each piece of merge state ``self.kept`` holds
    storage_components = merge_components("init", "last", "sum")

    @classmethod
    def tap_for(cls, backbone_name: str, hparams: Optional[Dict[str, Any]] = None) -> str:
        """block6, or block5 for SAMCL's AugModule on SAM2 (it adapts Hiera-T's blocks 6-9)."""
        augmodule = (hparams or {}).get("adapter", cls.declared_defaults()["adapter"]) == "augmodule"
        return "block5" if augmodule and backbone_name.startswith("sam2") else cls.tap

    # ------------------------------------------------------------------ the adapter
    def build(self) -> None:
        if self.hp["adapter"] == "lora":
            super().build()
            self.add_adapter(ADAPTER)
        else:
            self._build_augmodule()
        #: merge state between domains, {name: {parameter name: tensor}}; ``storage_components``
        self.kept: Dict[str, Dict[str, Tensor]] = {"init": self.snapshot()}
        self.count = 0
        self.previous_merge: Dict[str, Tensor] = {}

    def _build_augmodule(self) -> None:
        name, defaults = self.method_name, type(self).declared_defaults()
        cfg = config_for_backbone(self.backbone, rank=int(self.hp["rank"]))
        if sorted(self.hp["blocks"]) != list(cfg.blocks) and self.hp["blocks"] != defaults["blocks"]:
            raise ValueError(f"method {name!r}: with adapter 'augmodule' the blocks are the "
                             f"AugModule's {list(cfg.blocks)}, got 'blocks' {self.hp['blocks']!r}")
        for key in ("alpha", "targets"):
            if self.hp[key] != defaults[key]:
                raise ValueError(f"method {name!r}: hyper-parameter {key!r} applies to adapter "
                                 f"'lora' only, not 'augmodule'")
        if cfg.tap != self.tap:
            raise ValueError(f"method {name!r}: the AugModule on {self.backbone.name} needs tap "
                             f"{cfg.tap!r}, the strategy has {self.tap!r}")
        self.module_set = ModuleSet(cfg).attach(self.backbone.encoder_blocks)
        self.module_set.add(ADAPTER)
        self.parts["module_set"] = self.module_set

    def live(self) -> Dict[str, nn.Parameter]:
        """The adapter's parameters by name (what is trained, merged and evaluated)."""
        if self.hp["adapter"] == "lora":
            return {f"{key}.{part}.weight": getattr(layer, part)[ADAPTER].weight
                    for key, layer in self.layers.items() for part in ("lora_A", "lora_B")}
        return dict(self.module_set[ADAPTER].named_parameters())

    def gram_layers(self) -> Dict[str, nn.Linear]:
        """{weight name: nn.Linear} whose inputs' Gram matrices RegMean uses: LoRA's A and B, the
        AugModule's A and B (RegCL: ``filterd_layer_inputs``, A, B and C, in train_regcl.py)."""
        if self.hp["adapter"] == "lora":
            return {f"{key}.{part}.weight": getattr(layer, part)[ADAPTER]
                    for key, layer in self.layers.items() for part in ("lora_A", "lora_B")}
        module = self.module_set[ADAPTER]
        return {"A.weight": module.A, **{f"B.{i}.weight": b for i, b in enumerate(module.B)}}

    def snapshot(self) -> Dict[str, Tensor]:
        return {k: p.detach().clone() for k, p in self.live().items()}

    def load_live(self, values: Dict[str, Tensor]) -> None:
        with torch.no_grad():
            for key, p in self.live().items():
                p.copy_(values[key])

    def encode(self, feats: Dict[str, Tensor], batch: Dict[str, Any]) -> Dict[str, Tensor]:
        if self.hp["adapter"] == "lora":
            return super().encode(feats, batch)
        ms = self.module_set
        with ms.active(ADAPTER, batch["points"]):
            return self.backbone.features_from(feats, self.tap, pre_neck=ms.pre_neck, post_neck=ms.post_neck)

    # ------------------------------------------------------------------ domain boundaries
    def needs_init(self) -> bool:
        """Whether the initial adapter stays needed (restarts under ``indi``; task vectors)."""
        return self.hp["training"] == "indi"

    def before_domain(self, experience) -> None:
        self.previous_merge = self.snapshot()  # the merge so far (live since the last boundary)
        sequential = self.hp["training"] == "sequ" and "last" in self.kept
        self.load_live(self.kept["last" if sequential else "init"])

    def after_domain(self, experience) -> None:
        tuned = self.snapshot()
        self.count += 1
        self.fold(tuned, experience)
        if self.hp["training"] == "sequ":
            self.kept["last"] = tuned
        if not self.needs_init():
            self.kept.pop("init", None)
        self.load_live(self.merged())
        self.previous_merge = {}

    def fold(self, tuned: Dict[str, Tensor], experience) -> None:
        """Add this domain's fine-tuned adapter to the merge state."""
        total = self.kept.get("sum")
        self.kept["sum"] = dict(tuned) if total is None else {k: total[k] + v for k, v in tuned.items()}

    def merged(self) -> Dict[str, Tensor]:
        """The merged adapter from the merge state."""
        return {k: v / self.count for k, v in self.kept["sum"].items()}

    # ------------------------------------------------------------------ resume
    def method_state(self) -> Dict[str, Any]:
        return {"kept": {k: dict(v) for k, v in self.kept.items()}, "count": self.count}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        self.kept = {k: {n: t.to(self.device) for n, t in v.items()}
                     for k, v in state.get("kept", {}).items()}
        self.count = int(state.get("count", 0))

    def extra_record(self) -> Dict[str, Any]:
        return {"merged_domains": self.count}

