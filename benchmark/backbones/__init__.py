"""Frozen SAM / SAM2 backbones split at feature taps (docs/design.md section 2).

>>> bb = build_backbone("sam_small", checkpoint=None)          # random weights
>>> feats = bb.features_at(images, "block6")                    # {"tokens": (B,h,w,C)}
>>> low_res, iou = bb.decode(bb.features_from(feats, "block6"), points, labels)

Importing the package is light (no torch): the registry and the small SAM's configuration come at
once, the model classes on first use (``benchmark.backbones.SAMBackbone`` and the like load their
module then), so the command line's ``--help`` can read the registry without loading torch.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from .registry import BACKBONES, BackboneInfo, checkpoint_dir, list_backbones, model_info
from .small_sam.model import build_sam_small

_LAZY = {"SAMBackbone": "base", "Sam1Backbone": "sam1", "build_sam1": "sam1", "Sam2Backbone": "sam2",
         "build_sam2_model": "sam2", "CheckpointMismatchError": "checkpoints",
         **{name: "checkpoints" for name in ("file_fingerprint", "tensors_fingerprint", "load_into",
                                             "read_state_dict", "resolve_checkpoint", "save_state_dict")}}

__all__ = [
    "BACKBONES", "BackboneInfo", "CheckpointMismatchError", "SAMBackbone", "Sam1Backbone", "Sam2Backbone",
    "build_backbone", "build_sam_small", "checkpoint_dir", "list_backbones", "model_info",
    "save_official_checkpoint", "weights_fingerprint",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_backbone(name: str, checkpoint: str | Path | None = None, device: str = "cpu") -> SAMBackbone:
    """Build a frozen backbone in eval mode.

    ``checkpoint``: None (random init, as the official builders do), a file path, or "auto"
    (``checkpoint/<official file name>``). The file must be in the family's official format.
    """
    from .checkpoints import load_into, read_state_dict, resolve_checkpoint
    from .sam1 import Sam1Backbone, build_sam1
    from .sam2 import Sam2Backbone, build_sam2_model

    info = model_info(name)
    path = resolve_checkpoint(info, checkpoint)
    state_dict = read_state_dict(path, info.family) if path is not None else None
    if info.family == "sam":
        sam, cls = build_sam1(info.builder), Sam1Backbone
    else:
        sam, cls = build_sam2_model(info.builder), Sam2Backbone
    if state_dict is not None:
        load_into(sam, state_dict, path)
    return cls(name, sam.eval(), checkpoint_path=path).to(device)


def save_official_checkpoint(backbone: SAMBackbone, path: str | Path) -> Path:
    """Write the backbone's official model weights in its family's official format.

    SAM: ``torch.save(state_dict)``; SAM2: ``torch.save({"model": state_dict})``; a
    ``.safetensors`` suffix writes safetensors (the format of ``sam_small``).
    """
    from .checkpoints import save_state_dict

    path = Path(path)
    save_state_dict(backbone.sam.state_dict(), path, backbone.family)
    return path


def weights_fingerprint(backbone: SAMBackbone) -> str:
    """A short stable hash of the weights (a feature-cache key).

    The sha256 of the checkpoint file when the weights came from one, else of the tensors.
    Computed once and remembered, so adapters injected later do not change it.
    """
    from .checkpoints import file_fingerprint, tensors_fingerprint

    if backbone._fingerprint is None:
        if backbone.checkpoint_path is not None:
            backbone._fingerprint = file_fingerprint(backbone.checkpoint_path)
        else:
            backbone._fingerprint = tensors_fingerprint(backbone.sam.state_dict())
    return backbone._fingerprint
