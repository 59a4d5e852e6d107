"""Known backbones: official checkpoint file names, download sources and shapes."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from benchmark.core.registry import Registry

from .small_sam import model as small_sam

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    family: str                  # "sam" (segment_anything) or "sam2"
    checkpoint_file: str         # file name inside checkpoint/
    source: str                  # official URL, or where the file comes from
    image_size: int
    builder: str                 # sam_model_registry key, "small", or the sam2 config path


_SAM1_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"

BACKBONES: Registry[BackboneInfo] = Registry("backbone")
for _info in (
    BackboneInfo("sam_vit_b", "sam", "sam_vit_b_01ec64.pth", _SAM1_URL + "sam_vit_b_01ec64.pth", 1024, "vit_b"),
    BackboneInfo("sam_vit_l", "sam", "sam_vit_l_0b3195.pth", _SAM1_URL + "sam_vit_l_0b3195.pth", 1024, "vit_l"),
    BackboneInfo("sam_vit_h", "sam", "sam_vit_h_4b8939.pth", _SAM1_URL + "sam_vit_h_4b8939.pth", 1024, "vit_h"),
    BackboneInfo(
        "sam_small", "sam", small_sam.CHECKPOINT_FILE,
        "shipped with this project (see checkpoint/README.md for how it is trained)",
        small_sam.IMAGE_SIZE, "small",
    ),
    BackboneInfo("sam2.1_hiera_t", "sam2", "sam2.1_hiera_tiny.pt", _SAM2_URL + "sam2.1_hiera_tiny.pt",
                 1024, "configs/sam2.1/sam2.1_hiera_t.yaml"),
    BackboneInfo("sam2.1_hiera_s", "sam2", "sam2.1_hiera_small.pt", _SAM2_URL + "sam2.1_hiera_small.pt",
                 1024, "configs/sam2.1/sam2.1_hiera_s.yaml"),
    BackboneInfo("sam2.1_hiera_b+", "sam2", "sam2.1_hiera_base_plus.pt",
                 _SAM2_URL + "sam2.1_hiera_base_plus.pt", 1024, "configs/sam2.1/sam2.1_hiera_b+.yaml"),
    BackboneInfo("sam2.1_hiera_l", "sam2", "sam2.1_hiera_large.pt", _SAM2_URL + "sam2.1_hiera_large.pt",
                 1024, "configs/sam2.1/sam2.1_hiera_l.yaml"),
):
    BACKBONES.register(_info.name, _info)


def list_backbones() -> list[str]:
    return BACKBONES.names()


def model_info(name: str) -> BackboneInfo:
    try:
        return BACKBONES.get(name)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


def checkpoint_dir() -> Path:
    """Where "auto" looks for weights: $SAMCL_CHECKPOINT_DIR, else the repository's checkpoint/."""
    env = os.environ.get("SAMCL_CHECKPOINT_DIR")
    return Path(env) if env else REPO_ROOT / "checkpoint"
