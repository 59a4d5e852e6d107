"""Read torch.save zip checkpoints that pickle nn.Module objects, without executing pickled code.

The released SAMCL modules are ``torch.save`` of dicts of nn.Module objects, one of them a class
from the reference's own code (``module.SAMCL.Extra``), so ``torch.load(weights_only=True)``
refuses them and a plain unpickle would import and run foreign code. Here a restricted
``pickle.Unpickler`` resolves only an allow-list of globals: tensor rebuild functions, storage
types and a few containers. Every ``nn.Module`` class (torch's own or the foreign one) becomes a
:class:`ModuleState`, a plain record of the pickled ``__dict__`` (its ``_parameters``,
``_buffers``, ``_modules``), so no module code runs either. Storages are read from the zip directly.
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch._utils


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint references a global outside the allow-list (nothing was executed)."""


class CheckpointFormatError(ValueError):
    """The file is not a torch.save zip archive of the expected shape."""


class ModuleState:
    """Stand-in for a pickled nn.Module: keeps the class name and the pickled state, runs nothing."""

    def __init__(self, class_name: str) -> None:
        self.class_name = class_name
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise UnsafeCheckpointError(f"unexpected state for {self.class_name}: {type(state).__name__}")
        self.state = state

    @property
    def parameters(self) -> dict[str, torch.Tensor]:
        return dict(self.state.get("_parameters") or {})

    @property
    def modules(self) -> dict[str, "ModuleState"]:
        return dict(self.state.get("_modules") or {})

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Flattened parameters and buffers, like nn.Module.state_dict (None entries skipped)."""
        out: dict[str, torch.Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for k, v in (self.state.get(group) or {}).items():
                if v is not None:
                    out[prefix + k] = v.detach()
        for k, m in self.modules.items():
            if isinstance(m, ModuleState):
                out.update(m.state_dict(f"{prefix}{k}."))
        return out

    def __repr__(self) -> str:
        return f"ModuleState({self.class_name}, {sorted(self.state.get('_modules') or {})})"


def _module_factory(class_name: str) -> type:
    """A class standing in for an nn.Module class: pickle's NEWOBJ calls ``cls.__new__(cls)``
    (then BUILD calls ``__setstate__``), which here yields a fresh ModuleState named after it."""
    return type(f"Stub_{class_name.replace('.', '_')}", (ModuleState,),
                {"__new__": lambda cls, *a, **k: ModuleState(class_name)})


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("torch", "Size"): torch.Size,
}

class _StorageType:
    """What ``torch.<X>Storage`` resolves to here: only its dtype is needed."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


_STORAGES = {f"{name}Storage": _StorageType(dt) for name, dt in [
    ("Float", torch.float32), ("Double", torch.float64), ("Half", torch.float16),
    ("BFloat16", torch.bfloat16), ("Long", torch.int64), ("Int", torch.int32), ("Short", torch.int16),
    ("Char", torch.int8), ("Byte", torch.uint8), ("Bool", torch.bool)]}
# nn.Module classes seen in SAMCL checkpoints; anything else from torch.nn is refused too.
_MODULE_CLASSES = {
    ("torch.nn.modules.linear", "Linear"),
    ("torch.nn.modules.normalization", "LayerNorm"),
    ("torch.nn.modules.batchnorm", "BatchNorm1d"),
    ("torch.nn.modules.activation", "ReLU"),
    ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.modules.container", "ModuleDict"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.container", "ParameterList"),
    ("module.SAMCL", "Extra"),  # the reference's own prompt/neck container (SAM)
    ("module.SAMCL_2", "Extra"),  # the same for SAM2
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for one torch zip record: allow-listed globals only, storages from the archive."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._source = source
        self._storages: dict[str, torch.UntypedStorage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGES:
            return _STORAGES[name]
        if (module, name) in _MODULE_CLASSES:
            return _module_factory(f"{module}.{name}")
        raise UnsafeCheckpointError(f"{self._source}: refused global {module}.{name} (not in the allow-list)")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"{self._source}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else None
        if dtype is None or not isinstance(key, str) or not isinstance(numel, int):
            raise UnsafeCheckpointError(f"{self._source}: bad storage record {pid!r}")
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._prefix}data/{key}")
            except KeyError:
                raise CheckpointFormatError(f"{self._source}: missing storage data/{key}") from None
            untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
            self._storages[key] = untyped
        untyped = self._storages[key]
        itemsize = torch.empty((), dtype=dtype).element_size()
        if untyped.nbytes() != numel * itemsize:
            raise CheckpointFormatError(f"{self._source}: storage {key} has {untyped.nbytes()} bytes, "
                                        f"expected {numel * itemsize}")
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def safe_load(path: str | Path) -> Any:
    """Load a ``torch.save`` zip file through :class:`RestrictedUnpickler` (CPU tensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointFormatError(f"{path}: not a torch.save zip archive (legacy pickles are refused)")
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise CheckpointFormatError(f"{path}: expected one <name>/data.pkl record, found {pkl}")
        prefix = pkl[0][: -len("data.pkl")]
        order = prefix + "byteorder"
        if order in archive.namelist() and archive.read(order).strip() != b"little":
            raise CheckpointFormatError(f"{path}: big-endian checkpoints are not supported")
        return RestrictedUnpickler(archive.read(pkl[0]), archive, prefix, str(path)).load()
