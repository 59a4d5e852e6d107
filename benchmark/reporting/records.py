"""Run records: one self-describing JSON file per (method, backbone, stream, seed) run.

A record holds everything needed to regenerate tables without re-running anything: the resolved
config, the stream (domain order, trained count, evaluation-only domains), the seed, the code
version, package versions, device, the score matrices R per score (iou, dice, mae), the storage
ledger, the wall time per phase and the fingerprint of what determines the numbers. Every score
is a finite number in [0, 1] (``validate`` refuses the record otherwise, naming the field and
cell). JSON has no NaN: a NaN elsewhere, e.g. in ``extra``, is written as ``null`` and reads back
as None. Files are written atomically (temporary file in the same folder, fsync,
``os.replace``), so a crash never leaves a ``*.json`` that looks complete but is not.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from scenarios.fileio import atomic_path
from benchmark.reporting.domain_metrics import DOMAIN_METRICS
from benchmark.reporting.metrics import SCORES

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
PACKAGES = ("torch", "torchvision", "segment_anything", "sam2", "avalanche-lib", "peft", "numpy",
            "pandas", "pysodmetrics")


class RecordError(ValueError):
    """A run record (or its file) is malformed."""


@dataclass
class RunRecord:
    """One run. ``matrices[score]`` is the (T+1) x N score matrix as nested lists (row 0 =
    zero-shot, row t = after training the t-th domain; columns = ``stream["domains"]``)."""

    method: str
    backbone: str
    stream: dict          # {"name", "domains": [all N, column order], "trained": T, "eval_only": [...]}
    seed: int
    matrices: dict        # score name -> (T+1) x N nested lists of floats (NaN allowed in memory)
    config: dict = field(default_factory=dict)
    hparams: dict = field(default_factory=dict)
    storage: dict = field(default_factory=dict)   # StorageLedger.to_dict()
    timing: dict = field(default_factory=dict)    # {"cache_build": s, "train": [s per domain],
    #                                                "eval": [s per row], "total": s, "train_images":
    #                                                [images x epochs per domain], "eval_images": n}
    git: dict | None = None                       # {"commit": sha, "dirty": bool} or None
    packages: dict = field(default_factory=dict)  # distribution name -> version or None
    device: str = ""
    python: str = ""
    created: str = ""                             # ISO 8601, UTC
    extra: dict = field(default_factory=dict)     # method-specific (e.g. selector_accuracy)
    columns: list = field(default_factory=list)   # leaderboard columns the method contributes
    #                                               (reporting/columns.py; values in ``extra``)
    zero_shot: dict = field(default_factory=dict)  # score name -> row 0 (filled from matrices)
    #: part name -> JSON value: everything that determines the numbers (engine/fingerprint.py;
    #: results/README.md); records written before it existed read back with an empty one
    fingerprint: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        self.matrices = {k: np.asarray(v, dtype=float).tolist() for k, v in self.matrices.items()}
        if not self.zero_shot:
            self.zero_shot = {k: list(v[0]) for k, v in self.matrices.items() if len(v)}

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(cls, *, method: str, backbone: str, stream: Mapping, seed: int,
               matrices: Mapping, device: Any = "", repo_dir: str | Path | None = None,
               **kwargs) -> "RunRecord":
        """A record with the environment (git, packages, python, device, timestamp) filled in."""
        record = cls(method=method, backbone=backbone, stream=dict(stream), seed=int(seed),
                     matrices=dict(matrices), git=git_info(repo_dir),
                     packages=package_versions(), device=device_description(device),
                     python=platform.python_version(),
                     created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                     **kwargs)
        record.validate()
        return record

    # -- views -------------------------------------------------------------------------------
    @property
    def precision_tags(self) -> list[str]:
        """``["bf16"]`` for a run with a precision other than fp32, else ``[]``."""
        precision = (self.config or {}).get("precision") or "fp32"
        return [] if precision == "fp32" else [str(precision)]

    @property
    def method_label(self) -> str:
        """The method's name in tables, tagged with a precision other than fp32 ("samcl [bf16]"),
        so that bf16 runs are never averaged with fp32 runs as if they were more seeds."""
        return tagged_name(self.method, self.precision_tags)

    @property
    def trained(self) -> int:
        return int(self.stream["trained"])

    @property
    def domains(self) -> list[str]:
        return list(self.stream["domains"])

    @property
    def stream_name(self) -> str:
        return str(self.stream.get("name", ""))

    def matrix(self, score: str = "iou") -> np.ndarray:
        if score not in self.matrices:
            raise KeyError(f"record {self.method}/{self.backbone} seed {self.seed} has no "
                           f"{score!r} matrix (has {', '.join(self.matrices)})")
        return np.asarray(self.matrices[score], dtype=float)

    # -- validation --------------------------------------------------------------------------
    def validate(self) -> "RunRecord":
        for name in ("method", "backbone"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise RecordError(f"field {name!r} must be a non-empty string")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise RecordError(f"field 'seed' must be an int, got {self.seed!r}")
        s = self.stream
        if not isinstance(s, Mapping) or not {"name", "domains", "trained"} <= set(s):
            raise RecordError("field 'stream' must be a dict with 'name', 'domains', 'trained'")
        domains, T = s["domains"], s["trained"]
        if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
            raise RecordError("field 'stream.domains' must be a list of domain names")
        if isinstance(T, bool) or not isinstance(T, int) or not 1 <= T <= len(domains):
            raise RecordError(f"field 'stream.trained' must be an int in 1..{len(domains)}, "
                              f"got {T!r}")
        eval_only = s.get("eval_only", domains[T:])
        if list(eval_only) != domains[T:]:
            raise RecordError("field 'stream.eval_only' must equal the domains after the trained ones")
        if not isinstance(self.matrices, Mapping) or "iou" not in self.matrices:
            raise RecordError("field 'matrices' must be a dict with at least an 'iou' matrix")
        for score, m in self.matrices.items():
            if score not in SCORES and score not in DOMAIN_METRICS:
                raise RecordError(f"field 'matrices' has unknown score {score!r} "
                                  f"(known: {', '.join([*SCORES, *DOMAIN_METRICS])})")
            shape = np.asarray(m, dtype=float).shape
            if shape != (T + 1, len(domains)):
                raise RecordError(f"field 'matrices.{score}' has shape {shape}, expected "
                                  f"{(T + 1, len(domains))} (trained + 1 rows, one column per domain)")
            _check_range(score, np.asarray(m, dtype=float))
        for name in ("config", "hparams", "storage", "timing", "packages", "extra", "zero_shot",
                     "fingerprint"):
            if not isinstance(getattr(self, name), Mapping):
                raise RecordError(f"field {name!r} must be a dict")
        if not isinstance(self.columns, list) or not all(isinstance(c, Mapping) for c in self.columns):
            raise RecordError("field 'columns' must be a list of column specs")
        if self.git is not None and not isinstance(self.git, Mapping):
            raise RecordError("field 'git' must be a dict or null")
        return self

    # -- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict: NaN/inf become None."""
        return _nan_to_none(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping) -> "RunRecord":
        if not isinstance(data, Mapping):
            raise RecordError("a record must be a JSON object")
        known = {f.name for f in fields(cls)}
        missing = [n for n in ("method", "backbone", "stream", "seed", "matrices") if n not in data]
        if missing:
            raise RecordError(f"missing field(s): {', '.join(missing)}")
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise RecordError(f"schema_version {version!r} is not supported (expected "
                              f"{SCHEMA_VERSION})")
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            kwargs["matrices"] = {k: _none_to_nan(v) for k, v in data["matrices"].items()}
            if "zero_shot" in data:
                kwargs["zero_shot"] = {k: _none_to_nan(v) for k, v in data["zero_shot"].items()}
            record = cls(**kwargs)
        except (TypeError, ValueError, AttributeError) as exc:
            raise RecordError(f"bad matrices or fields: {exc}") from exc
        return record.validate()

    def file_name(self) -> str:
        """``<method>__<backbone>__<stream>__seed<seed>__<hash8>.json`` (hash of the content)."""
        text = json.dumps(self.to_dict(), sort_keys=True, allow_nan=False, default=str)
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        parts = [self.method, self.backbone, self.stream_name or "stream", f"seed{self.seed}",
                 digest]
        return "__".join(safe_name(p) for p in parts) + ".json"


def _check_range(score: str, matrix: np.ndarray) -> None:
    """Every score (IoU, Dice, MAE, and the domain metrics in the columns of the domains that
    declare them) is a finite fraction in [0, 1]; else a RecordError naming the field and the
    first bad cell (a missing score is written as null and reads as NaN)."""
    bad = ~(np.isfinite(matrix) & (matrix >= 0) & (matrix <= 1))
    if score in DOMAIN_METRICS:  # a domain's own metric is null in the columns that do not declare it
        bad &= ~np.isnan(matrix).all(axis=0, keepdims=True)
    if bad.any():
        t, j = (int(i) for i in np.argwhere(bad)[0])
        value = matrix[t, j]
        what = "missing or not finite" if not math.isfinite(value) else "outside [0, 1]"
        raise RecordError(f"field 'matrices.{score}' has {float(value)!r} at R[{t}, {j}] ({what}; "
                          f"{int(bad.sum())} bad cell(s))")


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------

def git_info(repo_dir: str | Path | None = None) -> dict | None:
    """``{"commit": sha, "dirty": bool}`` of the checkout holding this code, or None."""
    cwd = Path(repo_dir) if repo_dir is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(),
            "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            alt = name.replace("_", "-") if "_" in name else name.replace("-", "_")
            try:
                out[name] = metadata.version(alt)
            except metadata.PackageNotFoundError:
                out[name] = None
    return out


def device_description(device: Any = "") -> str:
    """E.g. ``"cuda:0 (NVIDIA H100 80GB HBM3)"`` or ``"cpu (x86_64, 2 threads)"``."""
    text = str(device) if device not in (None, "") else "cpu"
    try:
        import torch

        dev = torch.device(text)
        if dev.type == "cuda" and torch.cuda.is_available():
            return f"{text} ({torch.cuda.get_device_name(dev)})"
        if dev.type == "cpu":
            return f"cpu ({platform.machine() or 'unknown'}, {torch.get_num_threads()} threads)"
    except (RuntimeError, ValueError):
        pass
    return text


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

def write_record(record: RunRecord, results_dir: str | Path) -> Path:
    """Validate and write ``record`` atomically into ``results_dir``; return the file's path."""
    record.validate()
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / record.file_name()
    # default=str: a config value JSON cannot hold (e.g. a torch.dtype) is kept as its text
    text = json.dumps(record.to_dict(), indent=1, allow_nan=False, default=str)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    _fsync_dir(results_dir)
    return path


def read_record(path: str | Path) -> RunRecord:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not a readable JSON file ({exc})") from exc
    try:
        record = RunRecord.from_dict(data)
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from exc
    record.source_path = path  # not a field: where files the record names (per-image scores) lie
    return record


#: the manifest of a saved model (``<output>/models/<run id>/domain_<t>/``, engine/saved_models.py):
#: found beside the records, never one of them
SAVED_MODEL_MANIFEST = "model.json"


def record_files(paths_or_dirs: Iterable[str | Path] | str | Path) -> list[Path]:
    """The ``*.json`` files named or found (recursively; hidden names and saved models' manifests
    skipped) in folders."""
    if isinstance(paths_or_dirs, (str, Path)):
        paths_or_dirs = [paths_or_dirs]
    files: list[Path] = []
    for p in map(Path, paths_or_dirs):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*.json") if f.name != SAVED_MODEL_MANIFEST
                            and not any(part.startswith(".") for part in f.relative_to(p).parts))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such results file or folder: {p}")
    return files


def load_records(paths_or_dirs: Iterable[str | Path] | str | Path,
                 strict: bool = False) -> list[RunRecord]:
    """Read and validate records. A broken file is skipped with a one-line warning naming it,
    or raises ``RecordError`` when ``strict``."""
    records = []
    for f in record_files(paths_or_dirs):
        try:
            records.append(read_record(f))
        except RecordError as exc:
            if strict:
                raise
            log.warning("skipping %s", exc)
    return records


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def _nan_to_none(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (np.floating,)):
        return _nan_to_none(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _nan_to_none(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _none_to_nan(obj):
    if obj is None:
        return float("nan")
    if isinstance(obj, list):
        return [_none_to_nan(v) for v in obj]
    return obj


def tagged_name(name: str, tags: Iterable[str]) -> str:
    """``name [tag, tag]``, or ``name`` alone without tags."""
    tags = list(tags)
    return f"{name} [{', '.join(tags)}]" if tags else name


def safe_name(text: str) -> str:
    """``text`` made safe for a file name (``__`` is kept free as the field separator)."""
    text = re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text))
    return re.sub(r"_{2,}", "_", text).strip("-_.") or "x"


def _fsync_dir(path: Path) -> None:
    if sys.platform.startswith("win"):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
