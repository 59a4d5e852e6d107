"""Storage accounting: bytes a method keeps beyond the frozen backbone.

MB here means MiB = 2**20 bytes, as in the SAMCL paper (61,304 fp32 parameters = 245,216 bytes
= 0.234 MB). ``StorageLedger`` records, after each trained domain, the bytes of each component
(e.g. ``{"module_set": ..., "selector": ..., "buffer": ...}``) and gives totals and per-domain
increments. What a method counts is what a saved model holds (``SAMStrategy.storage``): tensors
of its state (benchmark/core/statetree.py) and kept training items (``KeptSamples``, stored as
``encode_samples`` encodes them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Sequence

import numpy as np
import torch

MB = 2 ** 20  # bytes in one "MB" (MiB) throughout the benchmark


def to_mb(n_bytes: float) -> float:
    """Bytes to MB (MiB, 2**20 bytes)."""
    return n_bytes / MB


class StorageLedger:
    """Bytes per component after each trained domain; JSON-serialisable via to_dict/from_dict."""

    def __init__(self) -> None:
        self.entries: list[dict] = []  # [{"domain": name, "components": {name: bytes}}]

    def record(self, domain: str, components: Mapping[str, int]) -> None:
        """Store the state after training ``domain`` (absolute bytes, not increments)."""
        clean = {}
        for name, value in components.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"storage component {name!r} must be a non-negative byte count, "
                                 f"got {value!r}")
            clean[str(name)] = int(value)
        self.entries.append({"domain": str(domain), "components": clean})

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def domains(self) -> list[str]:
        return [e["domain"] for e in self.entries]

    def components(self) -> list[str]:
        """All component names, in order of first appearance."""
        names: dict[str, None] = {}
        for e in self.entries:
            names.update(dict.fromkeys(e["components"]))
        return list(names)

    def totals(self) -> list[int]:
        """Total bytes after each domain."""
        return [sum(e["components"].values()) for e in self.entries]

    def increments(self) -> list[int]:
        """Bytes added by each domain (total after it minus total after the previous one)."""
        totals = self.totals()
        return [t - (totals[i - 1] if i else 0) for i, t in enumerate(totals)]

    def component_increments(self) -> list[dict[str, int]]:
        """Per component, bytes added by each domain (a missing component counts as 0)."""
        out, prev = [], {}
        for e in self.entries:
            cur = e["components"]
            out.append({k: cur.get(k, 0) - prev.get(k, 0) for k in self.components()})
            prev = cur
        return out

    def final(self) -> dict[str, int]:
        return dict(self.entries[-1]["components"]) if self.entries else {}

    def final_total(self) -> int:
        return self.totals()[-1] if self.entries else 0

    def final_total_mb(self) -> float:
        return to_mb(self.final_total())

    def to_dict(self) -> dict:
        return {
            "unit": "bytes",
            "mb_is": "2**20 bytes",
            "entries": [{"domain": e["domain"], "components": dict(e["components"])}
                        for e in self.entries],
            "totals": self.totals(),
            "increments": self.increments(),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "StorageLedger":
        if not isinstance(data, Mapping) or not isinstance(data.get("entries"), list):
            raise ValueError("storage ledger must be a dict with an 'entries' list")
        ledger = cls()
        for i, e in enumerate(data["entries"]):
            if not isinstance(e, Mapping) or "domain" not in e or not isinstance(
                    e.get("components"), Mapping):
                raise ValueError(f"storage ledger entry {i} needs 'domain' and a 'components' dict")
            ledger.record(e["domain"], e["components"])
        return ledger

    def __repr__(self) -> str:
        return (f"StorageLedger({len(self)} domains, final {self.final_total_mb():.3f} MB: "
                f"{self.final()})")


# ------------------------------------------------------------------------------- kept samples
#: how a kept training item is stored: the image (uint8, 3 x S x S), the mask packed at one bit per
#: pixel, the point prompts (float32 x, y, label per point)
SAMPLE_PARTS = ("images", "masks", "prompts")


def sample_bytes(prefix: str, n: int, image_size: int, points: int) -> Dict[str, int]:
    """Bytes of ``n`` kept items at ``image_size``, per part: ``{prefix}_images`` etc."""
    s = int(image_size)
    sizes = (3 * s * s, (s * s + 7) // 8, int(points) * 3 * 4)
    return {f"{prefix}_{part}": int(n) * size for part, size in zip(SAMPLE_PARTS, sizes)}


def encode_samples(items: Sequence[Mapping]) -> Dict[str, torch.Tensor]:
    """The stored form of dataset items (``image`` uint8 (3,S,S), ``mask`` (S,S) in {0,1},
    ``points`` (K,2), ``point_labels`` (K,)): {part: tensor}, ``sample_bytes`` bytes exactly."""
    images = torch.stack([item["image"].to(torch.uint8) for item in items])
    masks = pack_masks(torch.stack([item["mask"] for item in items]))
    prompts = pack_prompts(torch.stack([item["points"] for item in items]),
                           torch.stack([item["point_labels"] for item in items]))
    return {"images": images.contiguous(), "masks": masks, "prompts": prompts}


def pack_masks(masks: torch.Tensor) -> torch.Tensor:
    """Masks (N, ...) in {0,1} at one bit per pixel: uint8 (N, ceil(pixels / 8)), on the CPU."""
    bits = masks.detach().cpu().reshape(len(masks), -1).numpy() >= 0.5
    return torch.from_numpy(np.packbits(bits, axis=1)).contiguous()


def unpack_masks(packed: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``pack_masks``'s inverse: float32 masks (N, *shape)."""
    pixels = int(np.prod(shape))
    bits = np.unpackbits(packed.cpu().numpy(), axis=1)[:, :pixels]
    return torch.from_numpy(bits.astype(np.float32)).reshape(len(packed), *shape)


def pack_prompts(points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Point prompts (N, K, 2) and their labels (N, K) as float32 (x, y, label): (N, K, 3)."""
    return torch.cat([points.float(), labels.float()[..., None]], -1).contiguous()


@dataclass
class KeptSamples:
    """Training items a method keeps (a replay buffer, joint training's data): the item indices of
    each trained domain's train split, the point prompts per item, and whether a saved model holds
    copies of them (``by_reference``: it lists the indices only, for data too large to copy into
    every saved domain; storage counts them all the same)."""

    indices: Dict[int, List[int]]   # trained domain index -> item indices in its train split
    points: int                     # point prompts per item
    by_reference: bool = False

    def count(self) -> int:
        return sum(len(v) for v in self.indices.values())

    def nbytes(self, prefix: str, image_size: int) -> Dict[str, int]:
        return sample_bytes(prefix, self.count(), image_size, self.points)
