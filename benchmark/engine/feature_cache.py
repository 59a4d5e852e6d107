"""On-disk cache of frozen-encoder features, computed once per image and shared by every run.

A cache entry holds the features of one dataset at one tap of one backbone. Its key hashes the
backbone name, a fingerprint of its weights, the image size, the tap, the storage dtype and the
dataset's files (path, size, modification time), so changed weights or changed files give a new
entry. Entries are ``.npy`` files opened memory-mapped; an entry is built in a temporary folder and
renamed into place when complete, so a crash never leaves a half-written entry that looks complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

CACHE_FORMAT = 1
_DTYPES = {"float32": np.float32, "float16": np.float16}


def dataset_fingerprint(dataset) -> list:
    """(path, size, mtime_ns) of every file behind ``dataset`` (its ``files()``)."""
    entries = []
    for path in dataset.files():
        st = os.stat(path)
        entries.append([str(Path(path).resolve()), st.st_size, st.st_mtime_ns])
    return entries


def cache_key(backbone, dataset, tap: str, dtype: str) -> str:
    from benchmark.backbones import weights_fingerprint

    payload = {
        "format": CACHE_FORMAT,
        "backbone": backbone.name,
        "weights": weights_fingerprint(backbone),
        "image_size": backbone.image_size,
        "tap": tap,
        "dtype": dtype,
        "files": dataset_fingerprint(dataset),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def open_entry(entry: Path) -> Dict[str, np.ndarray]:
    """The arrays of a finished cache entry, memory-mapped read-only."""
    meta = json.loads((entry / "meta.json").read_text())
    return {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}


class CachedFeatureDataset(Dataset):
    """A view of a folder dataset that serves cached ``features`` instead of ``image``."""

    def __init__(self, base, arrays: Dict[str, np.ndarray], tap: str, entry: Optional[Path] = None):
        self.base = base
        self.arrays = arrays
        self.tap = tap
        self.entry = entry  # the cache entry the arrays were opened from (for pickling)
        n = len(base)
        for name, arr in arrays.items():
            if arr.shape[0] != n:
                raise ValueError(f"feature cache for tap {tap!r} holds {arr.shape[0]} items for "
                                 f"{name!r}, the dataset has {n}; delete the cache entry")

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        item = self.base.load_target(index)
        item["features"] = {name: torch.from_numpy(np.array(arr[index], dtype=np.float32))
                            for name, arr in self.arrays.items()}
        return item

    def __getstate__(self) -> Dict[str, Any]:
        # A memory map pickles as a full copy of its data: DataLoader workers started by spawn or
        # forkserver get the entry's path instead and map the files themselves.
        state = dict(self.__dict__)
        if self.entry is not None:
            state["arrays"] = None
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        if state["arrays"] is None:
            state["arrays"] = open_entry(state["entry"])
        self.__dict__.update(state)

    def __getattr__(self, name: str):
        # Delegate dataset metadata (names, domain_name, files, ...) to the folder dataset.
        if name in {"base", "arrays", "tap", "entry"}:
            raise AttributeError(name)
        return getattr(self.base, name)


class FeatureCache:
    """Builds and opens cache entries under ``root`` (default ``cache/features``)."""

    def __init__(self, root: str | os.PathLike = "cache/features", dtype: str = "float32",
                 batch_size: int = 8, progress: bool = True):
        if dtype not in _DTYPES:
            raise ValueError(f"feature cache dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.root = Path(root)
        self.dtype = dtype
        self.batch_size = batch_size
        self.progress = progress

    def entry_dir(self, backbone, dataset, tap: str) -> Path:
        return self.root / cache_key(backbone, dataset, tap, self.dtype)

    def view(self, backbone, dataset, tap: str) -> Dataset:
        """The dataset as seen from ``tap``: unchanged for ``image``, else cached features."""
        if tap == "image":
            return dataset
        entry = self.entry_dir(backbone, dataset, tap)
        if not (entry / "meta.json").is_file():
            self._build(backbone, dataset, tap, entry)
        return CachedFeatureDataset(dataset, open_entry(entry), tap, entry)

    @torch.no_grad()
    def _build(self, backbone, dataset, tap: str, entry: Path) -> None:
        from tqdm.auto import tqdm

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{entry.name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            device = next(backbone.parameters()).device
            arrays: Dict[str, np.ndarray] = {}
            n = len(dataset)
            name = getattr(dataset, "domain_name", None) or "dataset"
            bar = tqdm(total=n, desc=f"cache {name} @ {tap}", unit="img", disable=not self.progress,
                       leave=False)
            for start in range(0, n, self.batch_size):
                idx = range(start, min(start + self.batch_size, n))
                images = torch.stack([dataset.load_image(i) for i in idx]).to(device)
                feats = backbone.features_at(images, tap)
                for key, value in feats.items():
                    value = value.detach().float().cpu().numpy().astype(_DTYPES[self.dtype])
                    if key not in arrays:
                        arrays[key] = np.lib.format.open_memmap(
                            tmp / f"{key}.npy", mode="w+", dtype=value.dtype,
                            shape=(n,) + value.shape[1:])
                    arrays[key][start:start + len(idx)] = value
                bar.update(len(idx))
            bar.close()
            for arr in arrays.values():
                arr.flush()
            meta = {"format": CACHE_FORMAT, "backbone": backbone.name, "tap": tap,
                    "dtype": self.dtype, "items": n, "arrays": sorted(arrays),
                    "domain": name}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            del arrays
            try:
                os.replace(tmp, entry)
            except OSError:
                # Another process finished the same entry first: keep theirs.
                if not (entry / "meta.json").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def clear(self) -> int:
        """Delete every entry; returns how many were removed."""
        if not self.root.is_dir():
            return 0
        count = 0
        for child in self.root.iterdir():
            shutil.rmtree(child, ignore_errors=True)
            count += 1
        return count


def open_cache(root: Optional[str], dtype: str = "float32", progress: bool = True) -> FeatureCache:
    return FeatureCache(root or "cache/features", dtype=dtype, progress=progress)
