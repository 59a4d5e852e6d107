"""Frozen SAM: no training at all; the zero-shot reference row of every benchmark."""
from benchmark.core.registry import register_method
from methods.template import SAMStrategy


@register_method("zero_shot")
class ZeroShot(SAMStrategy):
    """Frozen SAM, no training: the zero-shot reference row of every benchmark."""
    relative_cost = 0.1  # a run's time against lora's (the default benchmark's records)

    tap = "neck"
    starts_as_backbone = True  # the backbone itself
    defaults = {"epochs": 0}
    storage_components = ()  # keeps nothing
