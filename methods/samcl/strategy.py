"""SAMCL as a benchmark strategy (``samcl``) and its oracle-routed upper bound (``samcl_oracle``).

Training: blocks 0-6 are frozen and untouched, so the domain's AugModule trains from the cached
block-6 tap (``tap = "block6"``). After each domain the first ``buffer_size`` pooled block-6 vectors
of its training set go into the buffer and the Module Selector keeps training on the whole buffer.
``buffer_order``: ``first`` (default) takes the training set's first items in dataset order;
``shuffled`` (the reference) the first ones of a loader shuffled with a generator seeded from the
run seed and the domain's index. ``general_join``: ``first`` (default) adds the evaluation-only
domains' vectors before the first domain; ``after_last`` (the reference) adds them after the last
trained domain's selector round and trains the selector one more round, before the final row.
Evaluation: images are grouped by the class the selector picks (the true domain for the oracle)
and each group runs once with that AugModule active; classes without a module (evaluation-only
general domains, domains not trained yet) get vanilla SAM. All modules stay in memory.

Evaluation-only domains reach the buffer only through :meth:`SAMCL.add_general_domain` (the runner
calls it, when it can, with the cached view of the domain's train split).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch.utils.data import DataLoader

from benchmark.core.registry import register_method
from benchmark.reporting.columns import Column
from methods.samcl.augmodule import AugModule, ModuleSet, config_for_backbone, count_parameters
from methods.samcl.selector import (FeatureBuffer, ModuleSelector, SelectorTraining, confusion_matrix,
                                    pooled_tap, train_selector)
from methods.template import SAMStrategy


@register_method("samcl")
class SAMCL(SAMStrategy):
    """SAMCL: one AugModule per domain in the encoder, chosen per image by the Module Selector."""
    relative_cost = 1.2  # a run's time against lora's (the default benchmark's records)

    tap = "block6"
    starts_as_backbone = True  # no AugModule before the first domain
    routing = "selector"
    #: the leaderboard column SAMCL adds (value: ``extra_record()["selector_accuracy"]``)
    report_columns = (Column("selector_accuracy", "Selector acc.", "higher", 100, 2),)
    defaults = {
        "rank": 10,
        "buffer_size": 300,
        "selector_lr": 0.01,
        "selector_epochs": 25,
        "selector_batch_size": 24,
        "transposed_neck": True,   # reference quirk (the released modules were trained with it)
        "window_map": "resize",    # reference quirk; "partition" aligns windowed blocks' map
        "buffer_order": "first",   # first | shuffled (the reference: its shuffled loader's first)
        "general_join": "first",   # first | after_last (the reference: after the last domain)
    }
    choices = {"buffer_order": ("first", "shuffled"), "general_join": ("first", "after_last")}
    #: the selector's confusion counts (``method.confusion``) are bookkeeping, not kept storage
    storage_components = (("parts.module_set.*", "module_set"), ("parts.selector.*", "selector"),
                          ("method.buffer.*", "buffer"))

    @classmethod
    def tap_for(cls, backbone_name: str, hparams: Optional[Dict[str, Any]] = None) -> str:
        """The tap for a backbone: the last untouched block (SAM2.1 Hiera-T adapts blocks 6-9)."""
        return "block5" if backbone_name.startswith("sam2") else "block6"

    # ------------------------------------------------------------------ build
    def build(self) -> None:
        cfg = config_for_backbone(self.backbone, rank=int(self.hp["rank"]),
                                  transposed_neck=bool(self.hp["transposed_neck"]),
                                  window_map=str(self.hp["window_map"]))
        if cfg.tap != self.tap:  # tap_for knows the backbone by name only; the modules by its blocks
            raise ValueError(f"{self.method_name} on {self.backbone.name} needs features at {cfg.tap!r}, "
                             f"but the strategy is fed {self.tap!r}")
        self.module_set = ModuleSet(cfg).attach(self.backbone.encoder_blocks)
        self.selector = ModuleSelector(cfg.width, len(self.domain_names))
        self.buffer = FeatureBuffer(int(self.hp["buffer_size"]))
        self.parts["module_set"] = self.module_set
        self.parts["selector"] = self.selector
        for p in self.selector.parameters():
            p.requires_grad_(False)  # trained by train_selector only, never by the segmentation loss
        self._current: Optional[str] = None
        self._confusion: Dict[int, torch.Tensor] = {}
        self.selector_losses: Dict[str, list] = {}
        self._general_added = False

    def trainable_parameters(self):
        if self._current is None:
            return []
        return list(self.module_set[self._current].parameters())

    # ------------------------------------------------------------------ domain boundaries
    def before_domain(self, experience) -> None:
        if self.hp["general_join"] == "first":  # evaluation-only domains' train splits feed the buffer
            self.join_general_domains()
        name = self.domain_names[self.domain_index]
        if name not in self.module_set.names():
            self.module_set.add(name).to(self.device)
        self._current = name

    def after_domain(self, experience) -> None:
        self.add_domain_vectors(self.domain_names[self.domain_index], experience.dataset)
        self._current = None
        self.train_selector()
        last = self.domain_index == self.n_trained - 1
        if last and self.hp["general_join"] == "after_last" and self.join_general_domains():
            self.train_selector(round_name="+".join(d.domain_name for d in self.general_datasets),
                                seed_index=self.n_trained)

    def join_general_domains(self) -> bool:
        """Add the evaluation-only domains' vectors to the buffer, once; whether any were added."""
        if self._general_added:
            return False
        for dataset in self.general_datasets:
            self.add_general_domain(dataset.domain_name, dataset)
        self._general_added = True
        return bool(self.general_datasets)

    def add_domain_vectors(self, name: str, dataset) -> int:
        """Pooled tap vectors of the first ``buffer_size`` items of ``dataset`` into the buffer:
        in dataset order, or (``buffer_order: shuffled``) in the order of a loader shuffled with a
        generator seeded ``seed * 1000 + the domain's index in the stream``."""
        from scenarios.stream import collate_samples, to_device

        kept = 0
        shuffled = self.hp["buffer_order"] == "shuffled"
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.domain_names.index(name))
        loader = DataLoader(dataset, batch_size=int(self.hp["eval_batch_size"]), shuffle=shuffled,
                            generator=generator if shuffled else None, collate_fn=collate_samples)
        with torch.no_grad():
            for batch in loader:
                if self.buffer.full(name):
                    break
                feats = self.backbone_features(to_device(batch, self.device))
                kept += self.buffer.add(name, pooled_tap(feats["tokens"].float()))
        return kept

    def add_general_domain(self, name: str, dataset) -> int:
        """An evaluation-only domain's train split (cached at ``tap``): its vectors join the buffer
        (the selector learns to send such images to vanilla SAM). ``join_general_domains`` calls
        it before the first domain, or after the last one (``general_join: after_last``)."""
        if name not in self.domain_names[self.n_trained:]:
            raise ValueError(f"{name!r} is not an evaluation-only domain of this stream "
                             f"({self.domain_names[self.n_trained:]})")
        return self.add_domain_vectors(name, dataset)

    def train_selector(self, round_name: Optional[str] = None, seed_index: Optional[int] = None) -> None:
        """One selector round on the whole buffer; its losses go to ``selector_losses[round_name]``
        (default: the current domain's name)."""
        params = list(self.selector.parameters())
        for p in params:
            p.requires_grad_(True)
        index = max(self.domain_index, 0) if seed_index is None else seed_index
        cfg = SelectorTraining(lr=float(self.hp["selector_lr"]), epochs=int(self.hp["selector_epochs"]),
                               batch_size=int(self.hp["selector_batch_size"]),
                               seed=self.seed * 1000 + index)
        class_of = {n: i for i, n in enumerate(self.domain_names)}
        round_name = self.domain_names[self.domain_index] if round_name is None else round_name
        self.selector_losses[round_name] = train_selector(
            self.selector, self.buffer, class_of, cfg)
        for p in params:
            p.requires_grad_(False)

    # ------------------------------------------------------------------ forward
    def encode(self, feats: Dict[str, torch.Tensor], batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """Training forward: the current domain's module active."""
        return self._encode_with(self._current, feats, batch["points"])

    def _encode_with(self, name: Optional[str], feats, points) -> Dict[str, torch.Tensor]:
        ms = self.module_set
        with ms.active(name, points):
            return self.backbone.features_from(feats, self.tap, pre_neck=ms.pre_neck, post_neck=ms.post_neck)

    def route(self, feats: Dict[str, torch.Tensor], batch: Dict[str, Any]) -> torch.Tensor:
        """Class index per image (the selector's pick; overridden by the oracle)."""
        return self.selector.predict(pooled_tap(feats["tokens"].float()))

    @torch.no_grad()
    def predict(self, batch: Dict[str, Any]) -> torch.Tensor:
        feats = self.backbone_features(batch)
        picks = self.selector.predict(pooled_tap(feats["tokens"].float()))
        self._note_picks(batch["domain"], picks)
        routes = self.route(feats, batch)
        out: Optional[torch.Tensor] = None
        names = set(self.module_set.names())
        for cls in routes.unique().tolist():
            idx = (routes == cls).nonzero().flatten()
            name = self.domain_names[cls] if self.domain_names[cls] in names else None
            sub = {k: v.index_select(0, idx) for k, v in feats.items()}
            enc = self._encode_with(name, sub, batch["points"].index_select(0, idx))
            low, _ = self.backbone.decode(enc, batch["points"].index_select(0, idx),
                                          batch["point_labels"].index_select(0, idx))
            if out is None:
                out = low.new_empty((routes.shape[0], *low.shape[1:]))
            out[idx] = low
        return out

    def _note_picks(self, true: torch.Tensor, picks: torch.Tensor) -> None:
        row = self.domain_index + 1  # evaluation row: 0 before training, t+1 after domain t
        n = len(self.domain_names)
        cm = confusion_matrix(true.to(picks.device).long(), picks, n).cpu()
        self._confusion[row] = self._confusion.get(row, torch.zeros(n, n, dtype=torch.long)) + cm

    # ------------------------------------------------------------------ resume
    def method_state(self) -> Dict[str, Any]:
        return {"modules": self.module_set.names(), "general_added": self._general_added,
                "buffer": dict(self.buffer.vectors), "selector_losses": self.selector_losses,
                "confusion": {str(row): cm for row, cm in self._confusion.items()}}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        for name in state.get("modules", []):  # recreated before the parts' weights are loaded
            if name not in self.module_set.names():
                self.module_set.add(name).to(self.device)
        self._general_added = bool(state.get("general_added", False))
        self.buffer.vectors = {k: v.clone() for k, v in state.get("buffer", {}).items()}
        self.selector_losses = {k: list(v) for k, v in state.get("selector_losses", {}).items()}
        self._confusion = {int(row): cm.clone() for row, cm in state.get("confusion", {}).items()}

    # ------------------------------------------------------------------ accounting
    def extra_record(self) -> Dict[str, Any]:
        rec: Dict[str, Any] = {
            "routing": self.routing,
            "aug_config": self.module_set.config.to_dict(),
            "aug_parameters": count_parameters(AugModule(self.module_set.config)),
            "aug_parameters_with_layernorm": count_parameters(AugModule(self.module_set.config), True),
            "selector_classes": list(self.domain_names),
            "buffer_sizes": {k: int(v.shape[0]) for k, v in self.buffer.vectors.items()},
            "selector_losses": self.selector_losses,
        }
        if self._confusion:
            final = max(self._confusion)
            cm = self._confusion[final]
            per_domain = {}
            for i, name in enumerate(self.domain_names):
                total = int(cm[i].sum())
                per_domain[name] = float(cm[i, i]) / total if total else None
            seen = cm.sum()
            rec["selector_accuracy_per_domain"] = per_domain
            rec["selector_accuracy"] = float(cm.trace()) / int(seen) if int(seen) else None
            rec["selector_confusion"] = cm.tolist()
            rec["selector_confusion_per_row"] = {str(r): m.tolist() for r, m in sorted(self._confusion.items())}
        return rec

    def save(self, path) -> Any:
        """Module set, selector and buffer in the safe format (safetensors + JSON)."""
        from methods.samcl.official import save_module_set

        return save_module_set(self.module_set, self.selector, self.buffer, path,
                               extra={"backbone": self.backbone.name, "classes": list(self.domain_names)})


@register_method("samcl_oracle")
class SAMCLOracle(SAMCL):
    """SAMCL's module set routed by the true domain: isolates the selector's errors."""

    routing = "oracle"
    relative_cost = 1.8  # a run's time against lora's (the default benchmark's records)

    def route(self, feats, batch) -> torch.Tensor:
        return batch["domain"].to(feats["tokens"].device).long()
