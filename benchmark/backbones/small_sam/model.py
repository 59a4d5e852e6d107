"""The ``sam_small`` configuration (docs/design.md section 2): the one place it is written.

A ViT with 12 blocks of width 192 at 256 px, built from the official ``segment_anything`` classes.
The backbone registry (``build_backbone("sam_small")``) and the pretraining both build it here, so
the shipped checkpoint/sam_small_synthetic.safetensors fits both. The modules are created in a fixed
order (image encoder, prompt encoder, mask decoder): random init under a seed depends on it.
"""
from __future__ import annotations

IMAGE_SIZE = 256  # input side in pixels
PATCH_SIZE = 16
PROMPT_DIM = 128  # prompt-embedding width = neck output channels = decoder transformer width
CHECKPOINT_FILE = "sam_small_synthetic.safetensors"  # the shipped weights, in checkpoint/


def build_sam_small():
    """A randomly initialised official ``Sam`` in the ``sam_small`` configuration, in eval mode."""
    from functools import partial

    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)
    from torch import nn

    grid = IMAGE_SIZE // PATCH_SIZE
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=12, embed_dim=192, img_size=IMAGE_SIZE, mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), num_heads=3, patch_size=PATCH_SIZE,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=(2, 5, 8, 11), window_size=6,
            out_chans=PROMPT_DIM,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_DIM, image_embedding_size=(grid, grid),
            input_image_size=(IMAGE_SIZE, IMAGE_SIZE), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=512, num_heads=8),
            transformer_dim=PROMPT_DIM, iou_head_depth=3, iou_head_hidden_dim=128,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()
