"""Joint training (upper bound): the decoder trained on the union of all domains seen so far.

After domain t the model has been trained on domains 1..t together (Avalanche's ``Cumulative``
recipe), so its last row is one model trained on all training domains together.
"""
from methods.baselines.finetune_decoder import FinetuneDecoder
from methods.registry import register_method


@register_method("joint")
class Joint(FinetuneDecoder):
    def build(self) -> None:
        super().build()
        self._seen_dataset = None

    def train_dataset_adaptation(self, **kwargs):
        current = self.experience.dataset
        self._seen_dataset = current if self._seen_dataset is None else self._seen_dataset.concat(current)
        self.adapted_dataset = self._seen_dataset

    def on_resume(self, finished_experiences) -> None:
        # The union of the domains trained before an interruption is rebuilt from their experiences.
        for experience in finished_experiences:
            self.experience = experience
            self.train_dataset_adaptation()
        self.experience = None
