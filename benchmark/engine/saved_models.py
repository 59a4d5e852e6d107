"""Saved models: a method's trained state after each domain, as safetensors and JSON (never pickles).

With ``save_models`` on (``--save-models``; ``auto``, the default, saves for every backbone but the
built-in ``sam_small``), the run writes after training its t-th domain (t = 1..T, the row t of R)
the folder ``<output>/models/<run id>/domain_<t>/``:

- ``model.safetensors``: what the method keeps, by storage component: tensor ``<component>/<name>``
  where ``<name>`` is the flat name of a tensor of the strategy's ``state_dict()``
  (benchmark/core/statetree.py) that the method's ``storage_components`` assign to
  ``<component>``, plus the copies of the training items it keeps (a replay buffer:
  ``buffer_images/<domain>`` uint8 images, ``buffer_masks/<domain>`` masks at one bit per pixel,
  ``buffer_prompts/<domain>`` float32 (x, y, label) points). The bytes per component are exactly
  the run record's storage entry for that domain.
- ``state.safetensors``: the rest of the state's tensors (bookkeeping that is not kept storage,
  e.g. SAMCL's selector confusion counts, the random generators' states of a-gem and der).
- ``model.json``: what it is (method, resolved hyper-parameters, domain index and name, stream,
  backbone, run id, seed, the record's fingerprint when the run has one, the run config), the
  R row the run scored with this state, bytes per component, kept items (indices; ``joint``'s data
  by reference only), the state's non-tensor values with the places of its tensors, the
  method's ``extra_record()`` and the sha256 of every file.
- ``stream.yaml``: the resolved stream config, so the folder is evaluated without the original.

:func:`load_model` reads it back (one-line errors for a missing, incomplete or corrupt folder);
``run_benchmark.py evaluate --from`` (benchmark/engine/evaluate_saved.py) re-scores it.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Tuple

import torch
import yaml

from benchmark.core import statetree
from benchmark.core.storage import SAMPLE_PARTS, encode_samples
from benchmark.reporting.records import SAVED_MODEL_MANIFEST
from scenarios.fileio import sha256_file

FORMAT, VERSION = "samcl-bench-saved-model", 1
META, MODEL, STATE, STREAM = SAVED_MODEL_MANIFEST, "model.safetensors", "state.safetensors", "stream.yaml"
MODELS_DIR = "models"


def enabled(cfg) -> bool:
    """Whether a run of ``cfg`` saves its models: ``save_models`` true/false, or ``auto``: for
    the real backbones, not for the built-in benchmark's ``sam_small``."""
    if cfg.save_models == "auto":
        return cfg.backbone != "sam_small"
    return bool(cfg.save_models)


def model_dir(output: str | Path, run_id: str, row: int) -> Path:
    """The folder of the model after ``row`` trained domains (row ``row`` of R)."""
    return Path(output) / MODELS_DIR / run_id / f"domain_{row}"


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous().clone()  # safetensors refuses shared memory


def _fingerprint(run) -> Any:
    """The run's fingerprint (``engine/fingerprint.py``), as its record carries it."""
    return run.identity.fingerprint


def _samples(run) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any], Dict[str, int]]:
    """Tensors of the kept items saved as copies, their description, and bytes per component."""
    tensors, described, sizes = {}, {}, {}
    names, size = run.stream.domain_names, int(run.strategy.backbone.image_size)
    for prefix, kept in run.strategy.kept_samples().items():
        sizes.update(kept.nbytes(prefix, size))
        described[prefix] = {"by_reference": kept.by_reference, "points": kept.points,
                             "indices": {names[t]: list(idx) for t, idx in kept.indices.items()}}
        if kept.by_reference:
            continue
        for t, idx in kept.indices.items():
            if not idx:
                continue
            parts = encode_samples([run.stream.train_datasets[t][i] for i in idx])
            for part, tensor in parts.items():
                tensors[f"{prefix}_{part}/{names[t]}"] = tensor
    return tensors, described, sizes


def _metadata(run, row: int, tree: Any, components: Dict[str, int], samples: Dict) -> Dict[str, Any]:
    s, strategy = run.stream, run.strategy
    meta = {"format": FORMAT, "version": VERSION, "method": run.method, "run_id": run.run_id,
            "seed": run.seed, "backbone": run.cfg.backbone, "checkpoint": run.cfg.checkpoint,
            "stream": {"name": run.ctx.stream_cfg.name, "domains": list(s.domain_names),
                       "trained": s.trained, "eval_only": list(s.domain_names[s.trained:])},
            "domain": {"index": row - 1, "name": s.domain_names[row - 1], "row": row},
            "hparams": strategy.hp, "config": run.cfg.to_dict(), "row": run.rows[row],
            "components": components, "samples": samples, "state": tree,
            "extra": strategy.extra_record()}
    fingerprint = _fingerprint(run)
    if fingerprint is not None:
        meta["fingerprint"] = fingerprint
    return meta


def save_model(run, row: int) -> Path:
    """Write the model of ``run`` after ``row`` trained domains; returns its folder."""
    from safetensors.torch import save_file

    strategy = run.strategy
    tensors, tree = statetree.flatten(strategy.state_dict())
    groups, rest = statetree.group_components(tensors, strategy.storage_components)
    model = {f"{c}/{name}": _cpu(t) for c, group in groups.items() for name, t in group.items()}
    components = {c: statetree.nbytes(group) for c, group in groups.items()}
    sample_tensors, samples, sample_sizes = _samples(run)
    model.update(sample_tensors)
    components.update(sample_sizes)
    meta = _metadata(run, row, tree, components, samples)
    target = model_dir(run.cfg.output, run.run_id, row)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        save_file(model, str(tmp / MODEL), metadata={"format": FORMAT})
        save_file({k: _cpu(t) for k, t in rest.items()}, str(tmp / STATE), metadata={"format": FORMAT})
        stream = {k: v for k, v in run.ctx.stream_cfg.to_dict().items() if k != "source"}
        (tmp / STREAM).write_text(yaml.safe_dump(stream, sort_keys=False))
        meta["files"] = {name: sha256_file(tmp / name) for name in (MODEL, STATE, STREAM)}
        (tmp / META).write_text(json.dumps(meta, indent=1, default=str))
        os.chmod(tmp, 0o755)
        if target.exists():  # a rerun of the same run id replaces its models
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def read_metadata(folder: str | Path) -> Dict[str, Any]:
    """``model.json`` of a saved model, its files checked against their sha256."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such saved-model folder")
    path = folder / META
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: not a saved model (no {META})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{path}: not a saved model of format {FORMAT} version {VERSION}")
    for name, digest in (meta.get("files") or {}).items():
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: missing (the saved model is incomplete)")
        if sha256_file(folder / name) != digest:
            raise ValueError(f"{folder / name}: its sha256 differs from the one in {META} "
                             f"(corrupt or changed)")
    if set(meta.get("files") or {}) != {MODEL, STATE, STREAM}:
        raise ValueError(f"{path}: 'files' must list {MODEL}, {STATE} and {STREAM}")
    return meta


def read_tensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ValueError(f"{path}: unreadable safetensors file ({exc})") from None


def component_tensors(folder: str | Path) -> Dict[str, Dict[str, torch.Tensor]]:
    """``model.safetensors`` of a saved model by component: {component: {name: tensor}}."""
    out: Dict[str, Dict[str, torch.Tensor]] = {}
    for key, tensor in read_tensors(Path(folder) / MODEL).items():
        component, _, name = key.partition("/")
        out.setdefault(component, {})[name] = tensor
    return out


def load_model(folder: str | Path) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(metadata, the strategy's ``state_dict()``) of a saved model."""
    folder = Path(folder)
    meta = read_metadata(folder)
    tensors = read_tensors(folder / STATE)
    copies = {f"{prefix}_{part}" for prefix in meta["samples"] for part in SAMPLE_PARTS}
    for component, group in component_tensors(folder).items():
        if component not in copies:  # kept training items are not part of the state
            tensors.update(group)
    try:
        state = statetree.unflatten(meta["state"], tensors)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{folder}: the saved state does not match its tensors ({exc})") from None
    return meta, state
