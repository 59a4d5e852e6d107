"""RegCL's replay variant (github.com/VDIGPKU/RegCL, ``train_replay.py``): merge by RegMean, then refine
the merged adapter on the current domain plus a buffer of every past domain.

Each domain's adapter is fine-tuned from the initial adapter (``training: indi``; train_replay.py
always starts from ``net_origin``) and its Gram matrices are taken as in ``regcl``. Domain 0's
adapter is the first merge (M_0, with its Gram matrices). On domain t >= 1 the fine-tuned adapter
and M_{t-1} are merged by RegMean with their Gram matrices (``avg_merge([tuned_t, merged_{t-1}],
[G_t, G_{M,t-1}])``), the merge is trained ``epochs`` more epochs on the current domain's training
set joined by the buffered items of the past domains (RegCL's ``Combined_SAM_set``), and the Gram
matrices of the refined M_t are taken on that joined set (``compute_gram(model, rep_trainloader)``).

RegCL buffers 300 images per domain (``--num_embedding``; 38% of Kvasir-SEG's 800 training images,
its smallest domain); the default ``buffer_per_domain`` is 10, as ``replay``'s, and 5 (42%) of the
built-in stream's 12 training images per domain (``methods/configs/replay_merge.yaml``); the buffer
is ``replay``'s
``SeededDomainBuffer``, counted as ``replay`` counts it (images, packed masks, prompts).
Storage: the merged adapter, the initial adapter, M's Gram matrices and the buffer.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence

from benchmark.core.storage import KeptSamples
from torch import Tensor

from benchmark.core.registry import register_method
from methods.baselines._merging import regmean_solve, regmean_sums
from methods.baselines.merge_mean import merge_components
from methods.baselines.regcl import RegCL
from methods.baselines.replay import SeededDomainBuffer


@register_method("replay_merge")
class ReplayMerge(RegCL):
    """RegMean of the new adapter with the previous merge, refined on current data + a buffer."""
    relative_cost = 3.0  # a run's time against lora's (the default benchmark's records)

    defaults = {"training": "indi", "buffer_per_domain": 10}
    storage_components = merge_components("init", "last", "merged_gram")

    def build(self) -> None:
        super().build()
        n = int(self.hp["buffer_per_domain"])
        if n < 1:
            raise ValueError(f"method {self.method_name!r}: 'buffer_per_domain' must be >= 1, got {n}")
        self.buffer = SeededDomainBuffer(n, max(self.n_trained, 1), self.seed)
        self._refining = False

    def learn_domain(self, experience, domain_index: int, **kwargs) -> None:
        super().learn_domain(experience, domain_index, **kwargs)
        data = experience.dataset
        if domain_index > 0:
            data = data.concat(self.buffer.buffer)
            if int(self.hp["epochs"]) > 0:
                self._refining = True
                try:
                    self.train(experience, eval_streams=[], **kwargs)
                finally:
                    self._refining = False
        self.kept["merged_gram"] = self.domain_grams(data)
        self.buffer.post_adapt(self, experience)

    def train_dataset_adaptation(self, **kwargs):
        super().train_dataset_adaptation(**kwargs)
        if self._refining:  # RegCL's Combined_SAM_set: the domain's data + the past domains' buffer
            self.adapted_dataset = self.adapted_dataset.concat(self.buffer.buffer)

    def fold(self, tuned: Dict[str, Tensor], experience) -> None:
        if self.count == 1:
            self._merged = dict(tuned)
            return
        grams, previous = self.domain_grams(experience.dataset), self.kept["merged_gram"]
        alpha = float(self.hp["regmean_alpha"])
        self._merged = {}
        for name, value in tuned.items():
            if name in grams:
                sums = regmean_sums([grams[name], previous[name]], [value, self.previous_merge[name]], alpha)
                self._merged[name] = regmean_solve(*sums)
            else:
                self._merged[name] = (value + self.previous_merge[name]) / 2

    def merged(self) -> Dict[str, Tensor]:
        return self._merged

    def method_state(self) -> Dict[str, Any]:
        return {**super().method_state(), "buffer_indices": [list(i) for i in self.buffer.indices]}

    def load_method_state(self, state: Dict[str, Any]) -> None:
        super().load_method_state(state)
        self.buffer.indices = [[int(j) for j in i] for i in state.get("buffer_indices", [])]

    def on_resume(self, finished_experiences: Sequence) -> None:
        # The buffered items are re-taken from the finished domains' datasets by their indices.
        for experience, idx in zip(finished_experiences, self.buffer.indices):
            self.buffer.add_group(experience.dataset, idx)

    def kept_samples(self) -> Dict[str, KeptSamples]:
        return {"buffer": self.buffer.kept()}

    def extra_record(self) -> Dict[str, Any]:
        return {**super().extra_record(), "buffer_indices": [list(i) for i in self.buffer.indices]}
