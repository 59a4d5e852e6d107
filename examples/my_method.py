"""A new method in one file: BitFit on SAM's mask decoder (Ben Zaken et al., ACL 2022).

Only the biases of the mask decoder are trained (about 1% of its parameters); everything else stays
frozen. Run it, and see it in the leaderboard, with:

    python run_benchmark.py --method-file examples/my_method.py --methods my_method

See docs/adding-a-method.md for the hooks a method can override.
"""
from benchmark.core.registry import register_method
from methods.template import SAMStrategy


@register_method("my_method")
class DecoderBitFit(SAMStrategy):
    """BitFit: only the mask decoder's biases are trained."""

    tap = "neck"                 # trainable parts sit in the decoder: start from the cached neck
    defaults = {"lr": 1e-3}      # typed, declared once: overrides the shared lr; add your own keys
    # Only the biases differ from the frozen backbone, so only they are kept (storage, saved models).
    storage_components = (("parts.mask_decoder.*bias", "decoder_biases"),)

    def build(self) -> None:
        decoder = self.backbone.mask_decoder   # SAM's or SAM2's: the backbone answers which
        for name, p in decoder.named_parameters():
            p.requires_grad_(name.endswith("bias"))
        self.parts["mask_decoder"] = decoder   # trained in place: each run has its own backbone copy
