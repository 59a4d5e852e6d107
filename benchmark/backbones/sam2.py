"""SAM2.1 (Hiera trunk + FPN neck), split at trunk blocks as ``SAM2ImagePredictor`` runs it."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Hook, SAMBackbone, resolve_attention

SAM2_MEAN = (0.485, 0.456, 0.406)
SAM2_STD = (0.229, 0.224, 0.225)


def build_sam2_model(config: str) -> nn.Module:
    """Random-init official model with the default post-processing overrides (weights loaded later)."""
    from sam2.build_sam import build_sam2

    return build_sam2(config, None, device="cpu")


class Sam2Backbone(SAMBackbone):
    """``sam2.modeling.sam2_base.SAM2Base``.

    ``features_at(x, "block{k}")`` returns {"tokens": block-k output (B,h,w,C)} plus
    {"stage{i}": output of trunk stage i (B,h,w,C)} for every stage that ends before block k
    (the FPN needs them). ``features_from`` returns {"image_embed", "high_res_0", "high_res_1"}:
    conv_s0/conv_s1 applied and ``no_mem_embed`` added, as ``SAM2ImagePredictor.set_image``.
    """

    family = "sam2"
    decoder_names = ("sam_mask_decoder", "sam_prompt_encoder")

    def __init__(self, name: str, sam: nn.Module, checkpoint_path=None) -> None:
        super().__init__(name, sam, checkpoint_path)
        self.trunk = sam.image_encoder.trunk
        self.encoder_blocks = self.trunk.blocks
        self.image_size = sam.image_size
        self.embed_size = sam.sam_image_embedding_size
        self.low_res_size = 4 * self.embed_size
        self.taps = ("image", *(f"block{k}" for k in range(len(self.encoder_blocks))), "neck")
        self.stage_ends: list[int] = list(self.trunk.stage_ends)
        self.attention = "sdpa"

    def set_attention(self, path: str) -> str:
        """Nothing to switch: Hiera's ``MultiScaleAttention`` (sam2 1.1.0) already calls
        ``F.scaled_dot_product_attention`` and has no relative-position bias, so every value runs
        it unchanged and ``self.attention`` stays ``sdpa`` (a run record says so)."""
        resolve_attention(path)  # an unknown value is still an error
        return self.attention

    def preprocess(self, images: Tensor) -> Tensor:
        """/255 (ToTensor) then Normalize(mean .485 .456 .406, std .229 .224 .225), as SAM2Transforms."""
        from torchvision.transforms.functional import normalize

        x = self._check_images(images).float().div(255)
        return normalize(x, SAM2_MEAN, SAM2_STD)

    def _embed(self, images: Tensor) -> Tensor:
        x = self.trunk.patch_embed(self.preprocess(images))
        return x + self.trunk._get_pos_embed(x.shape[1:3])

    def _is_output(self, i: int) -> bool:
        """Hiera.forward collects block i's output as a stage feature."""
        return i == self.stage_ends[-1] or (i in self.stage_ends and self.trunk.return_interm_layers)

    def _blocks(self, x: Tensor, start: int, stop: int, stages: dict[str, Tensor]) -> Tensor:
        """Run blocks start..stop-1, storing stage outputs (B,h,w,C) in ``stages``."""
        for i in range(start, stop):
            x = self.encoder_blocks[i](x)
            if self._is_output(i) and i < stop - 1:
                stages[f"stage{self.stage_ends.index(i)}"] = x
        return x

    def _stage_keys(self, k: int) -> list[str]:
        return [f"stage{j}" for j, e in enumerate(self.stage_ends) if e < k and self._is_output(e)]

    def _neck(self, stages: dict[str, Tensor], x: Tensor, pre_neck: Hook, post_neck: Hook) -> dict[str, Tensor]:
        """Hiera outputs -> FpnNeck -> scalp -> conv_s0/s1 -> no_mem_embed, as the predictor does."""
        sam = self.sam
        outputs = [stages[f"stage{j}"].permute(0, 3, 1, 2) for j in range(len(self.stage_ends) - 1)
                   if f"stage{j}" in stages]
        last = x.permute(0, 3, 1, 2)
        outputs.append(pre_neck(last) if pre_neck is not None else last)
        features, pos = sam.image_encoder.neck(outputs)
        scalp = sam.image_encoder.scalp
        if scalp > 0:
            features, pos = features[:-scalp], pos[:-scalp]
        backbone_out = {"vision_features": features[-1], "vision_pos_enc": pos, "backbone_fpn": features}
        if sam.use_high_res_features_in_sam:
            backbone_out["backbone_fpn"][0] = sam.sam_mask_decoder.conv_s0(backbone_out["backbone_fpn"][0])
            backbone_out["backbone_fpn"][1] = sam.sam_mask_decoder.conv_s1(backbone_out["backbone_fpn"][1])
        _, vision_feats, _, feat_sizes = sam._prepare_backbone_features(backbone_out)
        if sam.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + sam.no_mem_embed
        b = x.shape[0]
        feats = [f.permute(1, 2, 0).view(b, -1, *s) for f, s in zip(vision_feats, feat_sizes)]
        emb = feats[-1]
        out = {"image_embed": post_neck(emb) if post_neck is not None else emb}
        for j, f in enumerate(feats[:-1]):
            out[f"high_res_{j}"] = f
        return out

    def features_at(self, images: Tensor, tap: str) -> dict[str, Tensor]:
        k = self.tap_index(tap)
        if k < 0:
            return {"image": images}
        n = len(self.encoder_blocks)
        stages: dict[str, Tensor] = {}
        x = self._blocks(self._embed(images), 0, min(k + 1, n), stages)
        if k == n:
            return self._neck(stages, x, None, None)
        return {"tokens": x, **stages}

    def features_from(self, feats: dict, tap: str, *, pre_neck: Hook = None,
                      post_neck: Hook = None) -> dict[str, Tensor]:
        k = self.tap_index(tap)
        n = len(self.encoder_blocks)
        if k == n:
            keys = ["image_embed"] + [f"high_res_{j}" for j in range(self.sam.num_feature_levels - 1)]
            self._need(feats, keys, tap)
            if pre_neck is not None:
                raise ValueError("pre_neck cannot be applied from the 'neck' tap (it acts before the neck)")
            out = {key: feats[key].to(self.device) for key in keys}
            if post_neck is not None:
                out["image_embed"] = post_neck(out["image_embed"])
            return out
        if k < 0:
            self._need(feats, ["image"], tap)
            x, stages = self._embed(feats["image"]), {}
        else:
            keys = self._stage_keys(k)
            self._need(feats, ["tokens", *keys], tap)
            # clone: nothing downstream may touch the stored tap tensors
            x = feats["tokens"].to(self.device).clone()
            stages = {key: feats[key].to(self.device).clone() for key in keys}
            if self._is_output(k) and k < n - 1:
                stages[f"stage{self.stage_ends.index(k)}"] = x
        x = self._blocks(x, k + 1, n, stages)
        return self._neck(stages, x, pre_neck, post_neck)

    def decode(self, enc: dict, points: Tensor, point_labels: Tensor,
               multimask: bool = False) -> tuple[Tensor, Tensor]:
        """``SAM2ImagePredictor._predict`` for one prompt set per image, batched over images.

        Points in S-pixel space are normalised by the image size and scaled to the model's input
        size (SAM2Transforms.transform_coords). With ``multimask=False`` the decoder (in eval mode)
        applies SAM2's dynamic multimask-via-stability choice. Logits are clamped to [-32, 32].
        """
        sam = self.sam
        coords = points.to(self.device, torch.float32).clone()
        coords[..., 0] = coords[..., 0] / self.image_size
        coords[..., 1] = coords[..., 1] / self.image_size
        coords = coords * sam.image_size
        labels = point_labels.to(self.device).to(torch.int)
        sparse, dense = sam.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        high_res = [enc[f"high_res_{j}"] for j in range(sam.num_feature_levels - 1)] or None
        low, iou, _, _ = sam.sam_mask_decoder(
            image_embeddings=enc["image_embed"], image_pe=sam.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=multimask, repeat_image=False, high_res_features=high_res,
        )
        return torch.clamp(low, -32.0, 32.0), iou
