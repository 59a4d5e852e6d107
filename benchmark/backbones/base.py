"""The backbone interface shared by SAM and SAM2 (docs/design.md section 2)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Hook = Optional[Callable[[Tensor], Tensor]]
#: the ways ``SAMBackbone.upscale`` brings low-res logits to the mask size
UPSCALE_MODES = ("bilinear", "nearest")
#: the run option ``attention``: how the encoder blocks compute attention (``set_attention``)
ATTENTION_PATHS = ("auto", "official", "sdpa", "folded")


#: ``auto`` folds the bias from this token-grid side up (docs/scaling.md, "The attention path")
FOLDED_FROM_GRID = 32


def resolve_attention(path: str, grid: int = 64) -> str:
    """``auto`` -> ``folded`` for an encoder on a ``grid`` x ``grid`` token map of at least
    ``FOLDED_FROM_GRID`` (SAM ViT-B/L/H at 1024 px: 64; about 2.5x faster blocks 7-11 on this
    project's CPU, and the path that lets the flash kernels run on a GPU), ``official`` below
    (``sam_small``'s 16x16 tokens, where the paths are within a few percent); other values are
    returned as given (docs/scaling.md, "The attention path")."""
    if path not in ATTENTION_PATHS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_PATHS)}, got {path!r}")
    if path == "auto":
        return "folded" if grid >= FOLDED_FROM_GRID else "official"
    return path


class SAMBackbone(nn.Module):
    """A frozen official SAM / SAM2 model that can be split at a feature tap.

    ``features_from(features_at(x, t), t)`` equals the full encoder for every tap ``t``.
    Gradients flow through ``features_from`` and ``decode`` (adapters inside the blocks and
    decoder tuning need them); only the official weights are frozen.
    """

    name: str
    family: str
    image_size: int
    embed_size: int
    low_res_size: int
    taps: tuple[str, ...]
    sam: nn.Module
    encoder_blocks: nn.ModuleList
    decoder_names: tuple[str, str]   # the official model's (mask decoder, prompt encoder) attributes

    def __init__(self, name: str, sam: nn.Module, checkpoint_path=None) -> None:
        super().__init__()
        self.name = name
        self.sam = sam
        self.checkpoint_path = checkpoint_path
        self._fingerprint: str | None = None
        self.attention = "official"   # the attention path the blocks run (``set_attention``)
        for p in self.sam.parameters():
            p.requires_grad_(False)
        self.eval()

    # -- to be provided by the family -------------------------------------------------------
    def preprocess(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def _embed(self, images: Tensor) -> Tensor:
        """Preprocess + patch embedding + positional embedding: the input of block 0."""
        raise NotImplementedError

    def set_attention(self, path: str) -> str:
        """Make the encoder blocks compute attention the ``path`` way (``official``, ``sdpa`` or
        ``folded``; ``auto`` resolves by the token grid); returns what they run now, also kept in
        ``self.attention``. Parameters, hooks and adapters on the blocks are kept."""
        raise NotImplementedError

    # -- taps --------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.sam.parameters()).device

    def tap_index(self, tap: str) -> int:
        """-1 for "image", k for "block{k}", len(blocks) for "neck"."""
        if tap not in self.taps:
            raise ValueError(f"unknown tap {tap!r} for {self.name}; expected image, block0..block"
                             f"{len(self.encoder_blocks) - 1} or neck")
        if tap == "image":
            return -1
        if tap == "neck":
            return len(self.encoder_blocks)
        return int(tap[len("block"):])

    def _check_images(self, images: Tensor) -> Tensor:
        s = self.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise ValueError(f"{self.name} expects images of shape (B, 3, {s}, {s}), got {tuple(images.shape)}")
        return images.to(self.device)

    @staticmethod
    def _need(feats: dict, keys, tap: str) -> None:
        missing = [k for k in keys if k not in feats]
        if missing:
            raise ValueError(f"features for tap {tap!r} lack {missing}; got keys {sorted(feats)}")

    def encode(self, images: Tensor, *, pre_neck: Hook = None, post_neck: Hook = None) -> dict[str, Tensor]:
        """The full image encoder: what the decoder needs."""
        return self.features_from({"image": images}, "image", pre_neck=pre_neck, post_neck=post_neck)

    def features_at(self, images: Tensor, tap: str) -> dict[str, Tensor]:
        raise NotImplementedError

    def features_at_taps(self, images: Tensor, taps: Sequence[str]) -> dict[str, dict[str, Tensor]]:
        """``{tap: features_at(images, tap)}`` for each of ``taps`` (a backbone may compute them in
        one pass, bit for bit the same: the feature cache builds several taps at once)."""
        return {tap: self.features_at(images, tap) for tap in taps}

    def features_from(self, feats: dict, tap: str, *, pre_neck: Hook = None,
                      post_neck: Hook = None) -> dict[str, Tensor]:
        raise NotImplementedError

    def decode(self, enc: dict, points: Tensor, point_labels: Tensor,
               multimask: bool = False) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    @property
    def mask_decoder(self) -> nn.Module:
        """The official mask decoder module (SAM: ``mask_decoder``, SAM2: ``sam_mask_decoder``)."""
        return getattr(self.sam, self.decoder_names[0])

    @property
    def prompt_encoder(self) -> nn.Module:
        """The official prompt encoder (SAM: ``prompt_encoder``, SAM2: ``sam_prompt_encoder``)."""
        return getattr(self.sam, self.decoder_names[1])

    # -- shared ------------------------------------------------------------------------------
    def forward(self, images: Tensor, points: Tensor, point_labels: Tensor) -> tuple[Tensor, Tensor]:
        return self.decode(self.encode(images), points, point_labels)

    def upscale(self, low_res_logits: Tensor, mode: str = "bilinear") -> Tensor:
        """Low-res logits -> (B, C, S, S): bilinear as SAM's / SAM2's postprocessing, or nearest
        (what the SAMCL reference's vendored segment_anything does; the protocol samcl_reference)."""
        size = (self.image_size, self.image_size)
        if mode == "bilinear":
            return F.interpolate(low_res_logits, size, mode="bilinear", align_corners=False)
        if mode == "nearest":
            return F.interpolate(low_res_logits, size, mode="nearest")
        raise ValueError(f"upscale mode must be one of {', '.join(UPSCALE_MODES)}, got {mode!r}")

    def extra_repr(self) -> str:
        return f"name={self.name!r}, image_size={self.image_size}, taps=image,block0..{len(self.encoder_blocks) - 1},neck"
