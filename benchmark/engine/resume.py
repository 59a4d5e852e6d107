"""Resumable runs: a run id, and the run state saved at each domain boundary.

A run's state lives in ``<output>/.state/<run id>/state.pt`` (a hidden folder, so record loaders
skip it). It is written atomically (temporary file, fsync, ``os.replace``) after every trained
domain except the last, holds only tensors and plain containers (``torch.load(weights_only=True)``
reads it back: nothing is unpickled), and the folder is removed once the run's record is written.

The optimiser is not saved: the template builds a fresh Adam and schedule per domain, so a domain
boundary is a point where the optimiser holds nothing worth keeping.
"""
from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch

from scenarios.fileio import atomic_path

STATE_FORMAT = 1
STATE_FILE = "state.pt"
# Stream-config keys that name where files live, not what they hold: left out of the run id so
# that machines with different data or cache paths agree on it.
_PATH_KEYS = {"source", "cache_dir", "root"}


def _strip_paths(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _strip_paths(v) for k, v in obj.items() if k not in _PATH_KEYS}
    if isinstance(obj, (list, tuple)):
        return [_strip_paths(v) for v in obj]
    return obj


def compute_run_id(*, method: str, backbone: str, checkpoint: Optional[str], stream: Mapping,
                   seed: int, hparams: Mapping, precision: str = "fp32",
                   protocol: Optional[str] = None) -> str:
    """A deterministic 16-hex id of what determines a run's result (not where files live).
    ``protocol``: a protocol other than the default (None for ``project``, which leaves the id as
    it was before protocols existed)."""
    payload = {"method": method, "backbone": backbone,
               "checkpoint": None if checkpoint is None else Path(str(checkpoint)).name,
               "stream": _strip_paths(stream), "seed": int(seed), "hparams": dict(hparams),
               "precision": precision}
    if protocol is not None:
        payload["protocol"] = protocol
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def state_dir(output: str | Path, run_id: str) -> Path:
    return Path(output) / ".state" / run_id


# ------------------------------------------------------------------------------------ RNG states
def rng_state() -> Dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states as tensors and plain values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                        "gauss": gauss},
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


# ------------------------------------------------------------------------------------ files
def save_state(directory: str | Path, state: Dict[str, Any]) -> Path:
    """Write ``state`` atomically to ``<directory>/state.pt``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATE_FILE
    with atomic_path(path) as tmp:
        torch.save({"format": STATE_FORMAT, **state}, tmp)
    return path


def load_state(directory: str | Path) -> Optional[Dict[str, Any]]:
    """The saved state of a run, or None when there is none (or it is from another format)."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a state we cannot read is a state we cannot resume from
        raise ValueError(f"{path}: unreadable run state ({exc.__class__.__name__}: {exc}); "
                         f"delete it to start the run afresh") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: run state of an unknown format; delete it to start afresh")
    return state


def clear_state(directory: str | Path) -> None:
    directory = Path(directory)
    shutil.rmtree(directory, ignore_errors=True)
    parent = directory.parent
    if parent.name == ".state" and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
