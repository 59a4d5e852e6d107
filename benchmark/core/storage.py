"""Storage accounting: bytes a method keeps beyond the frozen backbone.

MB here means MiB = 2**20 bytes, as in the SAMCL paper (61,304 fp32 parameters = 245,216 bytes
= 0.234 MB). ``StorageLedger`` records, after each trained domain, the bytes of each component
(e.g. ``{"module_set": ..., "selector": ..., "buffer": ...}``) and gives totals and per-domain
increments.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

MB = 2 ** 20  # bytes in one "MB" (MiB) throughout the benchmark


def to_mb(n_bytes: float) -> float:
    """Bytes to MB (MiB, 2**20 bytes)."""
    return n_bytes / MB


def tensor_bytes(t: torch.Tensor, dtype: torch.dtype | None = None) -> int:
    """Bytes of a tensor's elements (at ``dtype``'s element size when given)."""
    size = torch.empty((), dtype=dtype).element_size() if dtype is not None else t.element_size()
    return t.numel() * size


def module_bytes(obj: nn.Module | Iterable[torch.Tensor], dtype: torch.dtype | None = None,
                 include_buffers: bool = True) -> int:
    """Bytes of a module's parameters (and buffers), or of an iterable of tensors.

    Shared tensors are counted once. ``dtype`` counts every tensor at that dtype's element size
    (e.g. what an fp16 copy would weigh).
    """
    if isinstance(obj, nn.Module):
        tensors = list(obj.parameters())
        if include_buffers:
            tensors += list(obj.buffers())
    elif isinstance(obj, torch.Tensor):
        tensors = [obj]
    else:
        tensors = list(obj)
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"module_bytes expects tensors, got {type(t).__name__}")
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += tensor_bytes(t, dtype)
    return total


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
