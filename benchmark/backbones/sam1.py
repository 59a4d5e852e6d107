"""SAM (segment_anything): ViT-B/L/H and the project's small configuration (built in small_sam/model.py)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import Tensor, nn

from .base import Hook, SAMBackbone, resolve_attention
from .small_sam.model import build_sam_small


def build_sam1(builder: str) -> nn.Module:
    """Random-init official model (weights are loaded afterwards by the caller)."""
    if builder == "small":
        return build_sam_small()
    from segment_anything import sam_model_registry

    return sam_model_registry[builder](checkpoint=None)


def rel_pos_bias(q: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor, size: tuple[int, int]) -> Tensor:
    """The terms the official ``add_decomposed_rel_pos`` adds to the attention logits, as an
    additive mask (B, heads, HW, HW) for queries ``q`` (B, heads, HW, d) on an (h, w) grid."""
    h, w = size
    b, heads, _, dim = q.shape
    r_q = q.reshape(b * heads, h, w, dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, get_rel_pos(h, h, rel_pos_h))
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, get_rel_pos(w, w, rel_pos_w))
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, heads, h * w, h * w)


class SdpaAttention(Attention):
    """The official ViT ``Attention`` (same parameters and state) computed by
    ``F.scaled_dot_product_attention``, the decomposed relative-position bias as its float mask.

    Installed by class assignment (``sam_attention``): it adds no state, so the block keeps its
    parameters, forward hooks (SAMCL's AugModules) and peft-wrapped ``qkv`` / ``proj``.
    """

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w)) if self.use_rel_pos else None
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return self.proj(x.permute(0, 2, 1, 3).reshape(b, h, w, -1))


def folded_qkv(q: Tensor, k: Tensor, v: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor,
               size: tuple[int, int], scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """Queries, keys and values whose plain dot product (scale 1) is the official attention's
    logits with the decomposed relative-position bias: ``q' = [q * scale, rel_h, rel_w]`` and
    ``k' = [k, onehot(key row), onehot(key column)]``, so ``q' . k'`` adds ``rel_h[q, row(k)] +
    rel_w[q, col(k)]``. All three are zero-padded to one head dimension, a multiple of 8 (the
    fused kernels' rule; ``v``'s padding is sliced off the output). No mask is left, so the fused
    kernels (CUDA flash, CPU flash with its backward) apply."""
    h, w = size
    b, heads, n, d = q.shape
    r_q = q.reshape(b * heads, h, w, d)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, get_rel_pos(h, h, rel_pos_h)).reshape(b, heads, n, h)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, get_rel_pos(w, w, rel_pos_w)).reshape(b, heads, n, w)
    dim = d + h + w
    pad = -dim % 8
    eye_h = torch.eye(h, dtype=k.dtype, device=k.device).repeat_interleave(w, 0)  # (n, h): row of key n
    eye_w = torch.eye(w, dtype=k.dtype, device=k.device).repeat(h, 1)            # (n, w): column of key n
    onehot = torch.cat([eye_h, eye_w, k.new_zeros(n, pad)], -1).expand(b, heads, n, h + w + pad)
    q_aug = torch.cat([q * scale, rel_h.to(q.dtype), rel_w.to(q.dtype), q.new_zeros(b, heads, n, pad)], -1)
    return q_aug, torch.cat([k, onehot], -1), F.pad(v, (0, dim + pad - d))


class FoldedAttention(Attention):
    """The official ViT ``Attention`` (same parameters and state) computed by
    ``F.scaled_dot_product_attention`` without a mask: the decomposed relative-position bias is
    folded into augmented queries and keys (``folded_qkv``; head dimension 64 + h + w, e.g. 192 in
    ViT-B's global blocks), so the flash kernels apply and no (HW, HW) bias is materialised.
    Installed by class assignment, like ``SdpaAttention``."""

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        d = q.shape[-1]
        if self.use_rel_pos:
            q, k, v = folded_qkv(q, k, v, self.rel_pos_h, self.rel_pos_w, (h, w), self.scale)
        x = F.scaled_dot_product_attention(q, k, v, scale=1.0 if self.use_rel_pos else self.scale)
        return self.proj(x[..., :d].permute(0, 2, 1, 3).reshape(b, h, w, -1))


#: the classes ``sam_attention`` installs, by attention path
ATTENTION_CLASSES = {"official": Attention, "sdpa": SdpaAttention, "folded": FoldedAttention}


def sam_attention(model: nn.Module, path: str) -> int:
    """Switch every ViT ``Attention`` inside ``model`` to ``path`` (a key of ``ATTENTION_CLASSES``)
    in place; returns how many were switched (the mask decoder's attention is another class,
    untouched)."""
    cls = ATTENTION_CLASSES[path]
    found = [m for m in model.modules() if isinstance(m, Attention)]
    for m in found:
        m.__class__ = cls
    return len(found)


class Sam1Backbone(SAMBackbone):
    """``segment_anything.Sam``. Taps: image, block0..block{n-1} -> {"tokens": (B,h,w,C)}, neck."""

    family = "sam"
    decoder_names = ("mask_decoder", "prompt_encoder")

    def __init__(self, name: str, sam: nn.Module, checkpoint_path=None) -> None:
        super().__init__(name, sam, checkpoint_path)
        enc = sam.image_encoder
        self.encoder_blocks = enc.blocks
        self.image_size = enc.img_size
        self.embed_size = sam.prompt_encoder.image_embedding_size[0]
        self.low_res_size = 4 * self.embed_size
        self.taps = ("image", *(f"block{k}" for k in range(len(enc.blocks))), "neck")

    def set_attention(self, path: str) -> str:
        self.attention = resolve_attention(path, self.embed_size)
        sam_attention(self.sam.image_encoder, self.attention)
        return self.attention

    def preprocess(self, images: Tensor) -> Tensor:
        """Float 0-255, then ``Sam.preprocess``: (x - pixel_mean) / pixel_std (no padding at S)."""
        return self.sam.preprocess(self._check_images(images).float())

    def _embed(self, images: Tensor) -> Tensor:
        enc = self.sam.image_encoder
        x = enc.patch_embed(self.preprocess(images))
        if enc.pos_embed is not None:
            x = x + enc.pos_embed
        return x

    def _blocks(self, x: Tensor, start: int, stop: int) -> Tensor:
        for blk in self.encoder_blocks[start:stop]:
            x = blk(x)
        return x

    def _neck(self, x: Tensor, pre_neck: Hook, post_neck: Hook) -> dict[str, Tensor]:
        x = x.permute(0, 3, 1, 2)
        if pre_neck is not None:
            x = pre_neck(x)
        emb = self.sam.image_encoder.neck(x)
        if post_neck is not None:
            emb = post_neck(emb)
        return {"image_embed": emb}

    def features_at(self, images: Tensor, tap: str) -> dict[str, Tensor]:
        k = self.tap_index(tap)
        if k < 0:
            return {"image": images}
        x = self._blocks(self._embed(images), 0, k + 1)
        if k == len(self.encoder_blocks):
            return self._neck(x, None, None)
        return {"tokens": x}

    def features_at_taps(self, images: Tensor, taps: Sequence[str]) -> dict[str, dict[str, Tensor]]:
        """One encoder pass for all ``taps``: each block runs once, whatever is asked is kept on
        the way (the same operations on the same batch as ``features_at`` per tap)."""
        n, out = len(self.encoder_blocks), {}
        depth = sorted(((self.tap_index(t), t) for t in set(taps)), key=lambda kt: kt[0])
        x, done = None, 0
        for k, tap in depth:
            if k < 0:
                out[tap] = {"image": images}
                continue
            if x is None:
                x = self._embed(images)
            x = self._blocks(x, done, min(k + 1, n))
            done = min(k + 1, n)
            out[tap] = self._neck(x, None, None) if k == n else {"tokens": x}
        return out

    def features_from(self, feats: dict, tap: str, *, pre_neck: Hook = None,
                      post_neck: Hook = None) -> dict[str, Tensor]:
        k = self.tap_index(tap)
        n = len(self.encoder_blocks)
        if k == n:
            self._need(feats, ["image_embed"], tap)
            if pre_neck is not None:
                raise ValueError("pre_neck cannot be applied from the 'neck' tap (it acts before the neck)")
            emb = feats["image_embed"].to(self.device)
            return {"image_embed": post_neck(emb) if post_neck is not None else emb}
        if k < 0:
            self._need(feats, ["image"], tap)
            x = self._embed(feats["image"])
        else:
            self._need(feats, ["tokens"], tap)
            x = feats["tokens"].to(self.device).clone()  # adapters may work in place
        return self._neck(self._blocks(x, k + 1, n), pre_neck, post_neck)

    def decode(self, enc: dict, points: Tensor, point_labels: Tensor,
               multimask: bool = False) -> tuple[Tensor, Tensor]:
        """Official prompt encoder + mask decoder for B images with one prompt set each.

        Points are in S-pixel space (SAM's ResizeLongestSide is the identity at S). The whole batch
        goes through the decoder at once (see ``decode_all_masks``).
        """
        pe = self.sam.prompt_encoder
        sparse, dense = pe(points=(points.to(self.device, torch.float32),
                                   point_labels.to(self.device, torch.float32)), boxes=None, masks=None)
        masks, iou = decode_all_masks(self.sam.mask_decoder, enc["image_embed"], pe.get_dense_pe(),
                                      sparse, dense)
        if multimask:
            return masks[:, 1:], iou[:, 1:]
        return masks[:, :1], iou[:, :1]


def decode_all_masks(mask_decoder: nn.Module, image_embeddings: Tensor, image_pe: Tensor,
                     sparse: Tensor, dense: Tensor) -> tuple[Tensor, Tensor]:
    """All mask tokens of the official ``MaskDecoder`` for B images with one prompt set each.

    Same computation as ``MaskDecoder.predict_masks``, minus its ``repeat_interleave`` of the image
    embedding per prompt set (which would pair every image with every prompt set when B > 1), so a
    batch is decoded in one pass. Returns (masks (B, 4, L, L), iou_pred (B, 4)); token 0 is the
    single-mask output, tokens 1-3 the multi-mask ones.
    """
    md = mask_decoder
    b = sparse.shape[0]
    output_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(b, -1, -1), sparse), dim=1)
    src = image_embeddings + dense
    pos_src = image_pe.expand(b, -1, -1, -1)
    _, c, h, w = src.shape
    hs, src = md.transformer(src, pos_src, tokens)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1:(1 + md.num_mask_tokens), :]
    upscaled = md.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper_in = torch.stack([md.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :])
                            for i in range(md.num_mask_tokens)], dim=1)
    _, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
    return masks, md.iou_prediction_head(iou_token_out)
