"""Sequential LoRA (peft) on the image encoder's attention projections, trained on each domain in turn.

One adapter (default rank 10 on ``attn.qkv`` of blocks 7-11, as the RegCL comparison), the rest of
SAM frozen (decoder included); it starts from the block-6 feature cache. Stores the A/B factors.
"""
from methods.baselines._lora_common import LoRAStrategy
from benchmark.core.registry import register_method


@register_method("lora")
class LoRA(LoRAStrategy):
    """Sequential LoRA on encoder attention (one adapter for all domains)."""

    storage_components = (("parts.lora.*", "lora"),)

    def build(self) -> None:
        super().build()
        self.add_adapter("default")

