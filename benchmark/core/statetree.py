"""A nested state (dicts, lists and tuples of tensors and plain values) as flat named tensors plus
a JSON tree, and its storage components.

``flatten(state)`` -> ``(tensors, tree)``: every tensor leaf gets the dotted path of its keys as its
name (``parts.lora.7_attn_qkv.lora_A.default.weight``, ``method.buffer.polyp``) and the tree keeps
everything else - containers (with their key types: an integer key stays an integer), numbers,
strings, booleans, None - with ``{"tensor": name}`` where a tensor was. ``unflatten(tree, tensors)``
rebuilds the state. This is how saved models store a method's ``state_dict()`` in safetensors
(tensors only) and JSON (benchmark/engine/saved_models.py), and what ``storage()`` counts.

``group_components(tensors, patterns)``: a method's ``storage_components`` are ``(pattern,
component)`` pairs (``fnmatch`` patterns over the flat names, first match wins); a tensor no
pattern matches is bookkeeping (e.g. SAMCL's selector confusion counts), kept to resume or
re-evaluate but not counted as storage.
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Dict, Mapping, Sequence, Tuple

import torch

_PLAIN = (bool, int, float, str, type(None))


def flatten(state: Any) -> Tuple[Dict[str, torch.Tensor], Any]:
    """(name -> tensor, JSON tree) of a nested state; a leaf of another type is a TypeError."""
    tensors: Dict[str, torch.Tensor] = {}

    def walk(obj: Any, path: str) -> Any:
        if torch.is_tensor(obj):
            if path in tensors:
                raise ValueError(f"two tensors of the state are both named {path!r}")
            tensors[path] = obj
            return {"tensor": path}
        if isinstance(obj, Mapping):
            items = []
            for key, value in obj.items():
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    raise TypeError(f"{path or 'state'}: key {key!r} is neither a string nor an integer")
                items.append([key, walk(value, f"{path}.{key}" if path else str(key))])
            return {"dict": items}
        if isinstance(obj, (list, tuple)):
            kind = "list" if isinstance(obj, list) else "tuple"
            return {kind: [walk(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(obj)]}
        if isinstance(obj, _PLAIN):
            return {"value": obj}
        raise TypeError(f"{path or 'state'}: a {type(obj).__name__} cannot be saved (tensors and "
                        f"plain containers only)")

    return tensors, walk(state, "")


def unflatten(tree: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The state ``flatten`` gave ``(tensors, tree)`` for; a missing tensor is a KeyError naming it."""
    if not isinstance(tree, Mapping) or len(tree) != 1:
        raise ValueError(f"malformed state tree node {tree!r}")
    (kind, value), = tree.items()
    if kind == "tensor":
        if value not in tensors:
            raise KeyError(f"tensor {value!r} of the state is missing")
        return tensors[value]
    if kind == "dict":
        return {key: unflatten(v, tensors) for key, v in value}
    if kind in ("list", "tuple"):
        items = [unflatten(v, tensors) for v in value]
        return items if kind == "list" else tuple(items)
    if kind == "value":
        return value
    raise ValueError(f"malformed state tree node {tree!r}")


def group_components(tensors: Mapping[str, torch.Tensor], patterns: Sequence[Tuple[str, str]]
                     ) -> Tuple[Dict[str, Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]:
    """({component: {name: tensor}} with every declared component present, {name: tensor} of the
    rest): each name goes to the component of the first pattern it matches."""
    groups: Dict[str, Dict[str, torch.Tensor]] = {component: {} for _, component in patterns}
    rest: Dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        component = next((c for pattern, c in patterns if fnmatchcase(name, pattern)), None)
        (groups[component] if component is not None else rest)[name] = tensor
    return groups, rest


def nbytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """Bytes of the tensors' elements, each counted in full (as safetensors stores them)."""
    return sum(t.numel() * t.element_size() for t in tensors.values())
