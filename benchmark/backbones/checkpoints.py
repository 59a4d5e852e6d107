"""Reading and writing weights in the official formats, and fingerprinting them.

SAM (segment_anything) ``.pth``: a plain state_dict. SAM2 ``.pt``: ``{"model": state_dict}``.
``.safetensors`` (any family, e.g. the project's ``sam_small``): a plain state_dict.
``torch.load`` is only ever called with ``weights_only=True``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from scenarios.fileio import sha256_file

from .registry import BackboneInfo, checkpoint_dir


#: weights shipped inside the package (the small SAM; in a checkout, a link to checkpoint/): what
#: "auto" falls back to when checkpoint/ lacks them, as in a ``pip install .`` (non-editable)
SHIPPED_DIR = Path(__file__).resolve().parent / "small_sam"


class CheckpointMismatchError(ValueError):
    """A checkpoint file that does not fit the model (wrong format, keys or shapes)."""


def resolve_checkpoint(info: BackboneInfo, checkpoint: str | Path | None) -> Path | None:
    """None -> None (random weights); "auto" -> checkpoint/<official file> (else the copy the
    package ships, for the small SAM); else the path itself."""
    if checkpoint is None:
        return None
    path = checkpoint_dir() / info.checkpoint_file if str(checkpoint) == "auto" else Path(checkpoint)
    if str(checkpoint) == "auto" and not path.is_file() and (SHIPPED_DIR / info.checkpoint_file).is_file():
        path = SHIPPED_DIR / info.checkpoint_file
    if not path.is_file():
        where = f"download it from {info.source}" if info.source.startswith("http") else f"it is {info.source}"
        raise FileNotFoundError(
            f"checkpoint for {info.name} not found: {path} ({where} and put it at "
            f"checkpoint/{info.checkpoint_file}; see checkpoint/README.md)"
        )
    return path


def read_state_dict(path: Path, family: str) -> dict[str, torch.Tensor]:
    """Read a state_dict from a file in the official format of ``family``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointMismatchError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointMismatchError(
            f"{path}: cannot be read with torch.load(weights_only=True) "
            f"({type(exc).__name__}); expected an official {family} checkpoint"
        ) from exc
    if family == "sam2":
        if not (isinstance(obj, dict) and isinstance(obj.get("model"), dict)):
            raise CheckpointMismatchError(f"{path}: expected a SAM2 checkpoint {{'model': state_dict}}")
        obj = obj["model"]
    if not (isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values())):
        raise CheckpointMismatchError(f"{path}: expected a plain state_dict of tensors (SAM .pth format)")
    return obj


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """Strictly load ``state_dict``; a mismatch is one clear line naming the file and a few keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
        raise CheckpointMismatchError(f"{path}: does not match the model: {'; '.join(parts)}")
    model.load_state_dict(state_dict, strict=True)


def save_state_dict(state_dict: dict[str, torch.Tensor], path: Path, family: str) -> None:
    """Write ``state_dict`` in the official format of ``family`` (safetensors if the suffix says so)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    elif family == "sam2":
        torch.save({"model": sd}, path)
    else:
        torch.save(sd, path)


def file_fingerprint(path: Path) -> str:
    """The first 16 hex digits of the file's sha256 (what ``sha256sum`` prints)."""
    return sha256_file(path)[:16]


def tensors_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
