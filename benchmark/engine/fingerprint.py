"""A run's fingerprint (named parts of everything that determines its numbers) and its run id.

``RunRecord.fingerprint`` is ``{part: JSON value}`` with the parts of :data:`PARTS`
(results/README.md describes each). The run id hashes the method and the parts of
:data:`IDENTITY_PARTS`: what the experiment is (stream, data, backbone, weights, hparams, protocol,
precision, seed). ``code`` and ``numerics`` are recorded but left out of the id, so that the same
experiment keeps its id on another commit or machine (grids spread over machines agree on what is
done; ``report`` compares the recorded parts of records of one id). A resume compares every part,
these two included: a record holds one fingerprint, so its rows must all come from it.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import torch

from benchmark.backbones import model_info
from benchmark.engine.config import RunConfig
from benchmark.reporting.records import device_description, git_info
from scenarios.fileio import cached_sha256
from scenarios.stream import data_fingerprint

PARTS = ("stream", "data", "backbone", "weights", "hparams", "protocol", "precision", "code",
         "numerics", "seed")
#: recorded and compared on resume, not in the run id (module docstring)
RECORDED_ONLY = ("code", "numerics")
IDENTITY_PARTS = tuple(p for p in PARTS if p not in RECORDED_ONLY)
#: parts that name what a run is asked to be (the rest is what it finds: data, weights, code,
#: numerics); saved states of equal settings are earlier attempts of the same run (resume.py)
SETTING_PARTS = ("stream", "backbone", "hparams", "protocol", "precision", "seed")
#: run-config fields that change the arithmetic (the ``precision`` part)
NUMERIC_OPTIONS = ("precision", "cache_dtype", "channels_last", "deterministic", "attention", "compile")
#: numeric options added after run ids were first published, with their values of before: a run
#: at that value leaves them out of its fingerprint, so its run id stays what it was
LATER_NUMERIC_OPTIONS = {"compile": False}
#: environment variables that change CPU/GPU arithmetic when set (recorded in ``numerics.env``;
#: the thread-count variables are not: the count the run had is ``numerics.threads``)
NUMERICS_ENV = ("MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR",
                "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
                "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE")
#: stream-config keys that say where files live, not what they hold
_PATH_KEYS = {"source", "cache_dir", "root"}
WEIGHTS_CACHE = "weights_sha256.json"
REPO_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Identity:
    """A run's ``fingerprint``, its ``run_id`` and its ``settings`` key (a hash of the method and
    :data:`SETTING_PARTS`)."""
    fingerprint: Dict[str, Any]
    run_id: str
    settings: str


def identify(cfg: RunConfig, stream_cfg, method: str, seed: int, hparams: Mapping, *,
             data: Optional[dict] = None, device: Any = None) -> Identity:
    """The identity of ``method`` with ``seed`` under ``cfg``; ``data``: the stream's
    :func:`scenarios.stream.data_fingerprint` when already computed (else computed here)."""
    fp = {"stream": stream_part(stream_cfg),
          "data": data if data is not None else data_fingerprint(stream_cfg, cfg.progress, cfg.cache_dir),
          "backbone": cfg.backbone,
          "weights": weights_sha256(cfg.backbone, cfg.checkpoint, cfg.cache_dir, cfg.progress),
          "hparams": json.loads(json.dumps(dict(hparams), default=str)), "protocol": cfg.protocol,
          "precision": {name: getattr(cfg, name) for name in NUMERIC_OPTIONS
                        if LATER_NUMERIC_OPTIONS.get(name, object()) != getattr(cfg, name)},
          "code": code_part(), "numerics": numerics_part(device), "seed": int(seed)}
    return Identity(fp, _digest(method, fp, IDENTITY_PARTS), _digest(method, fp, SETTING_PARTS))


def _digest(method: str, fp: Mapping, parts: Tuple[str, ...]) -> str:
    payload = {"method": method, **{p: fp[p] for p in parts}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------ parts
def stream_part(stream_cfg) -> dict:
    """The resolved stream config without paths; ``domains`` sorted by name and the training order
    in ``order`` (``order_seed`` left out: two seeds giving one order are one stream)."""
    out = _strip_paths(stream_cfg.to_dict())
    out.pop("order_seed", None)
    out["domains"] = sorted(out["domains"], key=lambda d: d["name"])
    out["order"] = [d.name for d in stream_cfg.ordered_domains()]
    return out


def _strip_paths(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _strip_paths(v) for k, v in obj.items() if k not in _PATH_KEYS}
    if isinstance(obj, (list, tuple)):
        return [_strip_paths(v) for v in obj]
    return obj


def weights_sha256(backbone: str, checkpoint: Optional[str], cache_dir: str | Path,
                   progress: bool = False) -> Optional[str]:
    """The sha256 of the checkpoint file ``checkpoint`` resolves to (None for random weights),
    remembered in ``<cache_dir>/weights_sha256.json`` by (path, size, mtime) so that a file is
    hashed once, not at every run (``scenarios.fileio.cached_sha256``; a bar when ``progress``)."""
    from benchmark.backbones.checkpoints import resolve_checkpoint

    path = resolve_checkpoint(model_info(backbone), checkpoint)
    if path is None:
        return None
    return cached_sha256([path], Path(cache_dir) / WEIGHTS_CACHE, progress)[0]


def code_part() -> dict:
    """This package's version and, in a git checkout, its commit and whether it has changes."""
    try:
        version = metadata.version("samcl-bench")
    except metadata.PackageNotFoundError:
        version = None
    git = git_info(REPO_DIR) or {}
    return {"version": version, "commit": git.get("commit"), "dirty": git.get("dirty")}


def numerics_part(device: Any = None) -> dict:
    """What the arithmetic depends on beyond the settings: torch, its threads, the BLAS and oneDNN
    builds and the CPU code path they take, the CPU model, the device, TF32 and the environment
    variables of :data:`NUMERICS_ENV` that are set."""
    shown = torch.__config__.show()

    def found(pattern: str) -> Optional[str]:
        m = re.search(pattern, shown)
        return m.group(1) if m else None

    out = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "interop_threads": torch.get_num_interop_threads(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "blas": found(r"BLAS_INFO=(\w+)"), "mkl": found(r"Math Kernel Library Version (\S+)"),
           "onednn": found(r"MKL-DNN (v[\d.]+)"), "cpu": cpu_model(),
           "device": device_description(device),
           "float32_matmul_precision": torch.get_float32_matmul_precision(),
           "env": {k: os.environ[k] for k in NUMERICS_ENV if k in os.environ}}
    if torch.cuda.is_available():
        out.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   cuda_matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
                   cudnn_tf32=torch.backends.cudnn.allow_tf32)
    return out


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# ------------------------------------------------------------------------------------ differences
def differences(old: Mapping, new: Mapping) -> List[str]:
    """One phrase per differing leaf of two fingerprints, e.g. ``weights sha256 ab12cd34.. (now
    ef56ab78..)`` or ``hparams epochs 3 (now 5)``, in :data:`PARTS` order."""
    out = []
    for part in PARTS:
        for key, a, b in _leaves(old.get(part), new.get(part), ""):
            name = "sha256" if part == "weights" else key
            out.append(" ".join(filter(None, [part, name, f"{_short(a)} (now {_short(b)})"])))
    return out


def _leaves(a: Any, b: Any, prefix: str) -> Iterator[Tuple[str, Any, Any]]:
    if a == b:
        return
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            yield from _leaves(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, a, b


def _short(value: Any) -> str:
    if value is None:
        return "none"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if re.fullmatch(r"[0-9a-f]{16,}", text):
        return text[:8] + ".."
    return text if len(text) <= 60 else text[:57] + "..."
