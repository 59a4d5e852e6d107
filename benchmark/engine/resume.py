"""Resumable runs: the run state saved at each domain boundary, the check that a saved state is
this run's, and the lock that keeps two processes off one run.

A run's state lives in ``<output>/.state/<run id>/state.pt`` (a hidden folder, so record loaders
skip it), next to ``identity.json`` (the run's fingerprint, ``fingerprint.py``). It is written
atomically (temporary file, fsync, ``os.replace``) after every trained domain except the last,
holds only tensors and plain containers (``torch.load(weights_only=True)`` reads it back: nothing is
unpickled), and the folder is removed once the run's record is written.

A saved state of the same settings (method, seed, stream, backbone, hyper-parameters, protocol,
precision) whose fingerprint differs from the run's (other weights or data behind the same names,
another commit, other numerics) is refused with a one-line reason naming the differing parts;
``--no-resume`` removes it and starts afresh. While a run executes, ``<output>/.state/<run
id>.lock`` holds its pid under an ``flock``: a second process of the same run id refuses to start.

The optimiser is not saved: the template builds a fresh Adam and schedule per domain, so a domain
boundary is a point where the optimiser holds nothing worth keeping.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np
import torch

from benchmark.engine.fingerprint import Identity, differences
from scenarios.fileio import atomic_path, atomic_write_text

STATE_FORMAT = 1
STATE_FILE = "state.pt"
IDENTITY_FILE = "identity.json"


class ResumeRefused(ValueError):
    """A saved state of this run was made under another fingerprint, or the run is running."""
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
def save_state(directory: str | Path, state: Dict[str, Any],
               identity: Optional[Identity] = None) -> Path:
    """Write ``state`` atomically to ``<directory>/state.pt`` (and ``identity`` to
    ``identity.json`` first, so that a state on disk always says whose it is)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if identity is not None:
        atomic_write_text(directory / IDENTITY_FILE, json.dumps(
            {"run_id": identity.run_id, "settings": identity.settings,
             "fingerprint": identity.fingerprint}, indent=1, default=str))
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


# ------------------------------------------------------------------------------------ identity
def saved_identities(output: str | Path) -> List[Tuple[Path, dict]]:
    """(state folder, its identity.json) of every saved state under ``<output>/.state`` that has
    one (states of older versions have none and are left alone)."""
    root = Path(output) / ".state"
    out = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            saved = json.loads((folder / IDENTITY_FILE).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(saved, dict):
            out.append((folder, saved))
    return out


def refuse_other_fingerprints(output: str | Path, identity: Identity) -> None:
    """Raise ``ResumeRefused`` when a saved state of the same settings as ``identity`` was made
    under another fingerprint (its own run id's, or another's: other weights or data)."""
    for folder, saved in saved_identities(output):
        if saved.get("settings") != identity.settings:
            continue
        diffs = differences(saved.get("fingerprint") or {}, identity.fingerprint)
        if diffs or folder.name != identity.run_id:
            raise ResumeRefused(f"resume refused: {folder} was made with {'; '.join(diffs)}; "
                                f"remove it or use --no-resume")


def discard_other_attempts(output: str | Path, identity: Identity) -> None:
    """``--no-resume``: remove the saved states of the same settings, except those of a run that
    is running now (its lock is held)."""
    for folder, saved in saved_identities(output):
        if saved.get("settings") == identity.settings and lock_holder(lock_path(output, folder.name)) is None:
            shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------ lock
def lock_path(output: str | Path, run_id: str) -> Path:
    return Path(output) / ".state" / f"{run_id}.lock"


def lock_holder(path: Path) -> Optional[str]:
    """The pid written in a lock file whose lock is held now, else None (no file, or a stale one
    of a process that died: the kernel released its ``flock``)."""
    try:
        fh = open(path, "r")
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return fh.read().strip() or "?"
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def run_lock(output: str | Path, run_id: str) -> Iterator[Path]:
    """Hold ``<output>/.state/<run id>.lock`` (an ``flock`` with this pid in the file) for the
    block; a lock another live process holds is a ``ResumeRefused`` naming it and its pid.
    ``fcntl.flock`` and not the ``filelock`` package: filelock truncates the file when it opens
    it, which would erase the holder's pid that the refusal names."""
    path = lock_path(output, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fh = open(path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            fh.close()
            raise ResumeRefused(f"run {run_id} is already running: {path} is held by pid {pid}; "
                                f"wait for it to finish") from None
        if _same_file(fh, path):
            break  # else the holder removed the file between our open and our lock: retry
        fh.close()
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        fh.close()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty


def _same_file(fh, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fh.fileno())
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)
