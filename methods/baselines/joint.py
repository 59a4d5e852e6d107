"""Joint training (upper bound): the parameters of ``lora`` trained on the union of all domains seen so far.

After domain t the model has been trained on domains 1..t together (Avalanche's ``Cumulative``
recipe), so its last row is one model trained on all training domains together. It trains what
``lora``, ``replay``, ``olora`` and the merges train (rank-10 LoRA on the encoder's attention), so it
is their upper bound: the same capacity without the sequential constraint. (Up to issue 4's retrained
small SAM it trained the decoder, as ``finetune_decoder``; with the better backbone the LoRA methods
overtook that bound - replay 63.4 against 58.1 AA mIoU on the default stream - so it no longer was one.)

To train on the union it keeps every training item seen so far, so its storage counts them as
``replay`` counts its buffer (``data_images``, ``data_masks``, ``data_prompts``: uint8 images, masks
at one bit per pixel, float32 prompts) besides the adapter. A saved model lists these items by
index rather than copying the whole training data into every saved domain.
"""
from typing import Dict

from benchmark.core.registry import register_method
from benchmark.core.storage import KeptSamples
from methods.baselines.lora import LoRA


@register_method("joint")
class Joint(LoRA):
    """The lora adapter trained on the union of the domains so far (upper bound of the LoRA methods)."""
    relative_cost = 1.9  # a run's time against lora's (the default benchmark's records)

    def build(self) -> None:
        super().build()
        self._seen_dataset = None
        self._seen_sizes = []   # items of each trained domain, in stream order
        self._points = 0

    def train_dataset_adaptation(self, **kwargs):
        current = self.experience.dataset
        self._seen_dataset = current if self._seen_dataset is None else self._seen_dataset.concat(current)
        self._seen_sizes.append(len(current))
        if len(current):
            self._points = int(current[0]["points"].shape[0])
        self.adapted_dataset = self._seen_dataset

    def kept_samples(self) -> Dict[str, KeptSamples]:
        return {"data": KeptSamples({t: list(range(n)) for t, n in enumerate(self._seen_sizes)},
                                    self._points, by_reference=True)}

    def on_resume(self, finished_experiences) -> None:
        # The union of the domains trained before an interruption is rebuilt from their experiences.
        for experience in finished_experiences:
            self.experience = experience
            self.train_dataset_adaptation()
        self.experience = None
