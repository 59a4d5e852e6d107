"""Sequential fine-tuning of SAM's mask decoder, one domain after another (the forgetting baseline)."""
from methods.registry import register_method
from methods.template import SAMStrategy


def mask_decoder_of(backbone):
    """The mask decoder module of a SAM (``mask_decoder``) or SAM2 (``sam_mask_decoder``) backbone."""
    sam = backbone.sam
    return sam.mask_decoder if hasattr(sam, "mask_decoder") else sam.sam_mask_decoder


@register_method("finetune_decoder")
class FinetuneDecoder(SAMStrategy):
    """Sequential fine-tuning of SAM's mask decoder, one domain after another (forgetting baseline)."""

    tap = "neck"
    defaults = {"lr": 1e-4}

    def build(self) -> None:
        # The runner gives every run its own copy of the backbone, so the decoder is trained in place.
        decoder = mask_decoder_of(self.backbone)
        for p in decoder.parameters():
            p.requires_grad_(True)
        self.parts["mask_decoder"] = decoder
