"""The pretraining recipe of the small SAM: the loss weights and :class:`PretrainConfig`.

Light on purpose (no torch): the ``pretrain-small-sam`` command reads its defaults from here when it
builds its ``--help``. pretrain.py beside this module explains the recipe.
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.backbones.small_sam.model import IMAGE_SIZE

FOCAL_WEIGHT, DICE_WEIGHT, IOU_WEIGHT = 20.0, 1.0, 1.0
FOCAL_ALPHA, FOCAL_GAMMA = 0.5, 2.0  # alpha: the foreground pixels' weight


@dataclass
class PretrainConfig:
    steps: int = 6400  # the shipped run: 55.7 min on the 2-core CPU with bf16 (checkpoint/README.md)
    batch_size: int = 4
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup: int = 100
    seed: int = 0
    point_prob: float = 0.5  # probability of a point prompt (else a box)
    background_point_prob: float = 0.25
    box_noise: float = 0.1  # box-side fraction (std) of the coordinate noise, capped at 20 px (as SAM)
    image_size: int = IMAGE_SIZE  # 256 for sam_small; tests use smaller models and images
    focal_alpha: float = FOCAL_ALPHA
    dice_weight: float = DICE_WEIGHT  # SAM: 20 x focal + 1 x dice
    targets_per_image: int = 6  # objects decoded (each with its own prompt) per encoded image
    prompts_per_target: int = 1  # independent prompts per object, all decoded from the same encoding
    bf16: bool = False  # bf16 autocast for forward/loss (about 1.6x faster on a CPU with avx512_bf16)
