"""On-disk cache of frozen-encoder features, computed once per image and shared by every run.

A cache entry holds the features of one dataset at one tap of one backbone. Its key hashes the
backbone name, a fingerprint of its weights, the image size, the tap, the storage dtype and the
dataset's files (path, size, modification time), so changed weights or changed files give a new
entry. Entries are ``.npy`` files opened memory-mapped; an entry is built in a temporary folder and
renamed into place when complete, so a crash never leaves a half-written entry that looks complete.
The missing entries of one dataset at several taps are built together, in one encoder pass
(``FeatureCache.views``; ``SAMBackbone.features_at_taps`` keeps each tap's features on the way, bit
for bit those of a pass per tap).

Faults: ``meta.json`` records each array file's size and sha256. Opening an entry checks the sizes
(a truncated or missing file, an unreadable ``meta.json`` or an entry built before checksums is
reported in one line naming the entry, which is then rebuilt); :meth:`FeatureCache.verify` (``cache
--verify``) hashes every file in full and removes the entries whose bytes changed, so that they are
rebuilt. Temporary folders are named ``.tmp-<key>-<random>@<host>@<pid>``; when the cache is first
used in a process, those of this host whose process is gone, and any other older than
``scenarios.fileio.STALE_AFTER_S``, are removed, with the atomic writes' temporary files of the
hash caches kept in the same folder (``scenarios.fileio.clean_stale_temps``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from scenarios.fileio import ATOMIC_TEMPS, clean_stale_temps, owner_tag, sha256_file

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
#: storage dtype -> the numpy dtype of its arrays; numpy has no bfloat16, so a ``bfloat16`` entry
#: holds the raw bits as int16 (``storage_array`` / ``served_tensor`` convert)
_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.int16}
CACHE_DTYPES = tuple(_DTYPES)


def storage_array(value: torch.Tensor, dtype: str) -> np.ndarray:
    """Features as stored in a ``dtype`` entry (rounded to nearest even, as torch casts)."""
    value = value.detach()
    if dtype == "bfloat16":
        return value.to(torch.bfloat16).cpu().view(torch.int16).numpy()
    return value.float().cpu().numpy().astype(_DTYPES[dtype])


def served_tensor(stored: np.ndarray) -> torch.Tensor:
    """One item of a stored array as a tensor of the storage dtype (int16 bits -> bfloat16).
    Items keep it up to the device: ``scenarios.stream.to_device`` casts to float32 there, so a
    half-size cache also halves the bytes loaded and copied."""
    tensor = torch.from_numpy(np.array(stored))  # a copy: the memory map is read-only
    return tensor.view(torch.bfloat16) if tensor.dtype == torch.int16 else tensor


class CacheEntryError(ValueError):
    """A cache entry is damaged (the message names it and says how)."""


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


def read_meta(entry: Path) -> dict:
    """An entry's ``meta.json``, with the recorded size and sha256 of every array file."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise CacheEntryError(f"feature cache entry {entry}: meta.json unreadable ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        raise CacheEntryError(f"feature cache entry {entry}: no checksums (built before they were recorded)")
    return meta


def check_sizes(entry: Path, meta: dict) -> None:
    """The cheap check: every array file is there with its recorded size."""
    for name, info in meta["files"].items():
        path = entry / name
        size = path.stat().st_size if path.is_file() else None
        if size != info["bytes"]:
            state = "missing" if size is None else f"{size} bytes, expected {info['bytes']} (truncated?)"
            raise CacheEntryError(f"feature cache entry {entry}: {name} is {state}")


def check_hashes(entry: Path, meta: dict) -> None:
    """The full check: every array file's sha256 equals the one recorded when it was built."""
    check_sizes(entry, meta)
    for name, info in meta["files"].items():
        if sha256_file(entry / name) != info["sha256"]:
            raise CacheEntryError(f"feature cache entry {entry}: {name} changed since it was built "
                                  "(sha256 differs)")


def open_entry(entry: Path) -> Dict[str, np.ndarray]:
    """The arrays of a finished cache entry, memory-mapped read-only, after the size check."""
    meta = read_meta(entry)
    check_sizes(entry, meta)
    try:
        return {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
    except (OSError, ValueError) as exc:
        raise CacheEntryError(f"feature cache entry {entry}: unreadable array ({exc})") from None


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
        item["features"] = {name: served_tensor(arr[index]) for name, arr in self.arrays.items()}
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
        self._cleaned = False

    def entry_dir(self, backbone, dataset, tap: str) -> Path:
        return self.root / cache_key(backbone, dataset, tap, self.dtype)

    def view(self, backbone, dataset, tap: str) -> Dataset:
        """The dataset as seen from ``tap``: unchanged for ``image``, else cached features."""
        return self.views(backbone, dataset, [tap])[tap]

    def views(self, backbone, dataset, taps: Sequence[str]) -> Dict[str, Dataset]:
        """``{tap: view(backbone, dataset, tap)}``; the missing entries are built together, in one
        encoder pass (``backbone.features_at_taps``)."""
        self._clean_once()
        out: Dict[str, Dataset] = {}
        missing = []
        for tap in dict.fromkeys(taps):
            if tap == "image":
                out[tap] = dataset
                continue
            entry = self.entry_dir(backbone, dataset, tap)
            if entry.exists():
                try:
                    out[tap] = CachedFeatureDataset(dataset, open_entry(entry), tap, entry)
                    continue
                except CacheEntryError as exc:
                    log.warning("%s; rebuilding it", exc)
                    self._discard(entry)
            missing.append(tap)
        if missing:
            entries = {tap: self.entry_dir(backbone, dataset, tap) for tap in missing}
            self._build(backbone, dataset, entries)
            for tap, entry in entries.items():
                out[tap] = CachedFeatureDataset(dataset, open_entry(entry), tap, entry)
        return out

    def verify(self) -> list:
        """Hash every entry in full; damaged ones are removed (the next use rebuilds them).
        Returns the messages of the damaged entries (empty: all intact)."""
        self._clean_once()
        damaged = []
        for entry in self.entries():
            try:
                check_hashes(entry, read_meta(entry))
            except CacheEntryError as exc:
                damaged.append(str(exc))
                self._discard(entry)
        return damaged

    def entries(self) -> list:
        """The finished entries' folders (temporary folders excluded)."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _discard(self, entry: Path) -> None:
        """Remove a damaged entry: renamed away first, so no reader sees it half deleted."""
        away = self._tmp_name(entry.name)
        try:
            os.replace(entry, away)
        except FileNotFoundError:  # another process removed it first
            return
        shutil.rmtree(away, ignore_errors=True)

    def _tmp_name(self, key: str) -> Path:
        return self.root / f".tmp-{key}-{uuid.uuid4().hex[:8]}{owner_tag()}"

    def clean_stale(self) -> list:
        """Remove what killed writers left here: temporary entry folders (``.tmp-*``, untagged
        ones by age) and atomic writes' temporary files (the hash caches'); never a live writer's."""
        return clean_stale_temps(self.root, (".tmp-*", ATOMIC_TEMPS))

    def _clean_once(self) -> None:
        if not self._cleaned:
            for name in self.clean_stale():
                log.warning("feature cache: removed %s, left by a killed writer", name)
            self._cleaned = True

    @torch.no_grad()
    def _build(self, backbone, dataset, entries: Dict[str, Path]) -> None:
        """Build the entry of each tap in ``entries`` ({tap: entry folder}) in one pass over
        ``dataset``: each in a temporary folder, renamed into place when complete."""
        from tqdm.auto import tqdm

        self.root.mkdir(parents=True, exist_ok=True)
        tmps = {tap: self._tmp_name(entry.name) for tap, entry in entries.items()}
        try:
            for tmp in tmps.values():
                tmp.mkdir()
            device = next(backbone.parameters()).device
            arrays: Dict[str, Dict[str, np.ndarray]] = {tap: {} for tap in entries}
            n = len(dataset)
            name = getattr(dataset, "domain_name", None) or "dataset"
            bar = tqdm(total=n, desc=f"cache {name} @ {'+'.join(entries)}", unit="img",
                       disable=not self.progress, leave=False)
            for start in range(0, n, self.batch_size):
                idx = range(start, min(start + self.batch_size, n))
                images = torch.stack([dataset.load_image(i) for i in idx]).to(device)
                for tap, feats in backbone.features_at_taps(images, list(entries)).items():
                    self._write_batch(arrays[tap], tmps[tap], feats, start, n)
                bar.update(len(idx))
            bar.close()
            for tap, entry in entries.items():
                self._finish(tmps[tap], entry, arrays.pop(tap), backbone.name, tap, name, n)
        finally:
            for tmp in tmps.values():
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)

    def _write_batch(self, arrays: Dict[str, np.ndarray], tmp: Path, feats: Dict[str, torch.Tensor],
                     start: int, n: int) -> None:
        """Features of one batch into the memory-mapped arrays of one entry (created at the first)."""
        for key, value in feats.items():
            value = storage_array(value, self.dtype)
            if key not in arrays:
                arrays[key] = np.lib.format.open_memmap(tmp / f"{key}.npy", mode="w+", dtype=value.dtype,
                                                        shape=(n,) + value.shape[1:])
            arrays[key][start:start + len(value)] = value

    def _finish(self, tmp: Path, entry: Path, arrays: Dict[str, np.ndarray], backbone: str, tap: str,
                domain: str, n: int) -> None:
        """Flush an entry's arrays, write its meta.json (sizes and sha256) and rename it into place."""
        for arr in arrays.values():
            arr.flush()
        files = {f"{key}.npy": {"bytes": (tmp / f"{key}.npy").stat().st_size,
                                "sha256": sha256_file(tmp / f"{key}.npy")} for key in arrays}
        meta = {"format": CACHE_FORMAT, "backbone": backbone, "tap": tap, "dtype": self.dtype,
                "items": n, "arrays": sorted(arrays), "domain": domain, "files": files}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        arrays.clear()
        try:
            os.replace(tmp, entry)
        except OSError:
            # Another process finished the same entry first: keep theirs.
            if not (entry / "meta.json").is_file():
                raise

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
