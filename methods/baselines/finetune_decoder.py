"""Sequential fine-tuning of SAM's mask decoder, one domain after another (the forgetting baseline)."""
from benchmark.core.registry import register_method
from methods.template import SAMStrategy



@register_method("finetune_decoder")
class FinetuneDecoder(SAMStrategy):
    """Sequential fine-tuning of SAM's mask decoder, one domain after another (forgetting baseline)."""
    relative_cost = 0.3  # a run's time against lora's (the default benchmark's records)

    tap = "neck"
    starts_as_backbone = True  # the pretrained decoder, untouched before training
    defaults = {"lr": 3e-4}  # Adam; the decoder is small and starts pretrained, so below the adapters' 5e-3

    def build(self) -> None:
        # The runner gives every run its own copy of the backbone, so the decoder is trained in place.
        decoder = self.backbone.mask_decoder
        for p in decoder.parameters():
            p.requires_grad_(True)
        self.parts["mask_decoder"] = decoder
