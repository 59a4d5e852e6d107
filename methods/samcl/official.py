"""Import the reference's released SAMCL checkpoints; save / load our module sets safely.

Released files (``SAM1/<domain>.pth``, ``SAM2/<domain>.pth``) are read with
:func:`methods.samcl.safe_pickle.safe_load` (no pickled code runs); ``Module_Selector.pth`` is a
plain state_dict and goes through ``torch.load(weights_only=True)``. Our own module sets are saved as
safetensors plus a JSON of metadata (never pickles).

:func:`export_released` writes a module set and selector in the released layout (one
``<domain>.pth`` per module, ``Module_Selector.pth``). The released ``<domain>.pth`` pickles whole
``nn.Module`` objects (``Linear``, ``LayerNorm`` and the reference's own ``module.SAMCL.Extra``);
ours holds their state dicts under the same names instead (no pickled classes), plus
``export.json`` (class order, module config) that the released folders lack. The importer here
reads both; the reference's own code needs ``module.load_state_dict(sd)`` for each entry.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import torch

from methods.samcl.augmodule import AugConfig, AugModule, ModuleSet, hiera_t_config, vit_config
from methods.samcl.safe_pickle import CheckpointFormatError, ModuleState, safe_load
from methods.samcl.selector import FeatureBuffer, ModuleSelector
from scenarios.fileio import atomic_path, atomic_write_text

# Class order of the released selectors and the file names of the released modules.
OFFICIAL_DOMAINS = ("Kvasir", "camo", "ISTD", "ISIC", "cod", "COCO")
OFFICIAL_GENERAL = ("COCO",)
#: the released files' names of the paper stream's domains where they differ (scenarios/streams/paper.yaml)
RELEASED_NAMES = {"CAMO": "camo", "COD10K": "cod"}
EXPORT_INFO = "export.json"
FORMAT_VERSION = 1


def _state_of(state: ModuleState | Mapping, src: str, what: str) -> dict[str, torch.Tensor]:
    """A released module's tensors: a pickled module (the released files) or its state dict (our
    exports, :func:`export_released`)."""
    if isinstance(state, ModuleState):
        return state.state_dict()
    if isinstance(state, Mapping) and all(torch.is_tensor(v) for v in state.values()):
        return dict(state)
    raise CheckpointFormatError(f"{src}: {what} is {type(state).__name__}, expected a module or a state dict")


def _linear(state: ModuleState | Mapping, src: str, what: str) -> dict[str, torch.Tensor]:
    sd = _state_of(state, src, what)
    if "weight" not in sd:
        raise CheckpointFormatError(f"{src}: {what} has no weight")
    return sd


def official_to_state_dict(obj: dict, src: str = "<checkpoint>") -> tuple[AugConfig, dict[str, torch.Tensor]]:
    """Convert one released AugModule (as read by safe_load) to (config, AugModule state_dict)."""
    need = {"extra", "lora_layer", "A"}
    if not isinstance(obj, dict) or not need <= set(obj):
        raise CheckpointFormatError(f"{src}: not a SAMCL AugModule checkpoint (keys {sorted(obj) if isinstance(obj, dict) else type(obj).__name__})")
    blocks = tuple(int(b) for b in obj["lora_layer"])
    a = _linear(obj["A"], src, "A")
    rank, width = a["weight"].shape
    extra = _state_of(obj["extra"], src, "'extra'")
    neck = "upward.weight" in extra
    if neck:
        cfg = vit_config(width=width, depth=max(blocks) + 1, neck_dim=extra["upward_.weight"].shape[0],
                         rank=rank)
    else:
        cfg = hiera_t_config(rank=rank)
    if cfg.blocks != blocks or cfg.width != width:
        raise CheckpointFormatError(f"{src}: blocks {blocks} / width {width} do not match a known SAMCL layout")
    sd = {"A.weight": a["weight"], "A.bias": a["bias"],
          "prompt.weight": extra["layer.weight"], "prompt.bias": extra["layer.bias"],
          "prompt_norm.weight": extra["norm.weight"], "prompt_norm.bias": extra["norm.bias"]}
    if neck:
        sd.update({"up_pre.weight": extra["upward.weight"], "up_pre.bias": extra["upward.bias"],
                   "up_post.weight": extra["upward_.weight"], "up_post.bias": extra["upward_.bias"]})
    for i in range(len(blocks)):
        for ours, theirs in (("B", "B"), ("norm1", "norm1"), ("norm2", "norm2")):
            key = f"{theirs}_{i:03d}"
            if key not in obj:
                raise CheckpointFormatError(f"{src}: missing {key}")
            for k, v in _linear(obj[key], src, key).items():
                sd[f"{ours}.{i}.{k}"] = v
    return cfg, {k: v.detach().clone().float() for k, v in sd.items()}


def load_official_module(path: str | Path, config: AugConfig | None = None) -> AugModule:
    """One released ``<domain>.pth`` as an AugModule (reference quirks on). ``config``: the shape
    and options an export recorded (``export.json``), checked against the file's tensors."""
    cfg, sd = official_to_state_dict(safe_load(path), str(path))
    if config is not None:
        if any(getattr(cfg, k) != getattr(config, k) for k in ("width", "blocks", "rank", "neck_dims")):
            raise CheckpointFormatError(f"{path}: its tensors do not fit the recorded config {config}")
        cfg = config
    module = AugModule(cfg)
    module.load_state_dict(sd, strict=True)
    return module


def load_official_selector(path: str | Path) -> ModuleSelector:
    """The released ``Module_Selector.pth`` (a plain state_dict of the 4-layer MLP)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"selector checkpoint not found: {path}")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict) or "layer1.weight" not in sd or "layer4.weight" not in sd:
        raise CheckpointFormatError(f"{path}: not a Module_Selector state_dict")
    n_out, _ = sd["layer4.weight"].shape
    selector = ModuleSelector(sd["layer1.weight"].shape[1], n_out)
    selector.load_state_dict(sd, strict=True)
    return selector.eval()


def read_export_info(folder: str | Path) -> dict | None:
    """``export.json`` of a folder written by :func:`export_released` (None for a released one)."""
    path = Path(folder) / EXPORT_INFO
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        classes, config = list(info["classes"]), AugConfig(**info["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointFormatError(f"{path}: unreadable export description ({exc})") from None
    return {**info, "classes": classes, "config": config}


def load_official_set(folder: str | Path, domains: Sequence[str] | None = None
                      ) -> tuple[ModuleSet, ModuleSelector, list[str]]:
    """A released folder (``SAM1`` or ``SAM2``) or one of our exports: every ``<domain>.pth``
    present + the selector. ``domains``: the selector's classes in order; default: the export's
    (``export.json``), else the released ones (:data:`OFFICIAL_DOMAINS`).

    Returns (module set, selector, class names in selector order); classes without a module file
    (COCO) route to vanilla SAM.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"released SAMCL folder not found: {folder}")
    info = read_export_info(folder)
    domains = tuple(domains or (info["classes"] if info else OFFICIAL_DOMAINS))
    config = info["config"] if info else None
    mods = {d: load_official_module(folder / f"{d}.pth", config) for d in domains
            if (folder / f"{d}.pth").is_file()}
    if not mods:
        raise FileNotFoundError(f"{folder}: no <domain>.pth module among {domains}")
    cfg = next(iter(mods.values())).config
    ms = ModuleSet(cfg)
    for d, m in mods.items():
        ms.add(d, m)
    selector = load_official_selector(folder / "Module_Selector.pth")
    if selector.n_classes != len(domains):
        raise CheckpointFormatError(f"{folder}: selector has {selector.n_classes} outputs, expected {len(domains)}")
    return ms, selector, list(domains)


# --- export in the released layout ---------------------------------------------------------------
def to_released(module: AugModule) -> dict:
    """One AugModule as a released ``<domain>.pth`` holds it, with each pickled module replaced by
    its state dict: ``{"extra": {"layer.*", "norm.*"[, "upward.*", "upward_.*"]}, "lora_layer":
    [blocks], "A": {...}, "B_000": {...}, "norm1_000": {...}, "norm2_000": {...}, ...}``."""
    sd = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    pairs = {"layer": "prompt", "norm": "prompt_norm", "upward": "up_pre", "upward_": "up_post"}
    extra = {f"{theirs}.{p}": sd[f"{ours}.{p}"] for theirs, ours in pairs.items()
             for p in ("weight", "bias") if f"{ours}.{p}" in sd}
    out = {"extra": extra, "lora_layer": list(module.config.blocks),
           "A": {"weight": sd["A.weight"], "bias": sd["A.bias"]}}
    for name in ("B", "norm1", "norm2"):  # the released files' order
        for i in range(len(module.config.blocks)):
            out[f"{name}_{i:03d}"] = {p: sd[f"{name}.{i}.{p}"] for p in ("weight", "bias")}
    return out


def export_released(module_set: ModuleSet, selector: ModuleSelector, classes: Sequence[str],
                    folder: str | Path, extra: dict | None = None) -> Path:
    """Write ``<class>.pth`` per module and ``Module_Selector.pth`` as the released folders have
    them (``torch.load(weights_only=True)`` reads them: state dicts, no pickled classes) and
    ``export.json`` (class order, module config, ``extra``); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if selector.n_classes != len(classes):
        raise ValueError(f"the selector has {selector.n_classes} classes, {len(classes)} names given")
    for name in module_set.names():
        if name not in classes:
            raise ValueError(f"module {name!r} is not among the classes {list(classes)}")
        with atomic_path(folder / f"{name}.pth") as tmp:
            torch.save(to_released(module_set[name]), tmp)
    with atomic_path(folder / "Module_Selector.pth") as tmp:
        torch.save({k: v.detach().cpu().clone() for k, v in selector.state_dict().items()}, tmp)
    info = {"format": "samcl-released-layout", "classes": list(classes),
            "config": module_set.config.to_dict(), **(extra or {})}
    atomic_write_text(folder / EXPORT_INFO, json.dumps(info, indent=2))
    return folder


# --- our own format ------------------------------------------------------------------------------
def save_module_set(module_set: ModuleSet, selector: ModuleSelector | None, buffer: FeatureBuffer | None,
                    path: str | Path, extra: dict | None = None) -> Path:
    """Write ``<path>.safetensors`` (tensors) and ``<path>.json`` (metadata). Returns the JSON path."""
    from safetensors.torch import save_file

    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    base.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, mod in module_set.aug.items():
        for k, v in mod.state_dict().items():
            tensors[f"module/{name}/{k}"] = v.detach().contiguous().cpu()
    meta: dict = {"format": "samcl-module-set", "version": FORMAT_VERSION,
                  "config": module_set.config.to_dict(), "domains": module_set.names(), **(extra or {})}
    if selector is not None:
        for k, v in selector.state_dict().items():
            tensors[f"selector/{k}"] = v.detach().contiguous().cpu()
        meta["selector"] = {"in_dim": selector.in_dim, "n_classes": selector.n_classes}
    if buffer is not None:
        for name, vecs in buffer.vectors.items():
            tensors[f"buffer/{name}"] = vecs.contiguous().cpu()
        meta["buffer"] = {"capacity": buffer.capacity, "domains": list(buffer.vectors)}
    with atomic_path(base.with_suffix(".safetensors")) as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(base.with_suffix(".json"), json.dumps(meta, indent=2))
    return base.with_suffix(".json")


def load_module_set(path: str | Path) -> tuple[ModuleSet, ModuleSelector | None, FeatureBuffer | None, dict]:
    """Inverse of :func:`save_module_set`; returns (module set, selector, buffer, metadata)."""
    from safetensors.torch import load_file

    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    meta_path, tensor_path = base.with_suffix(".json"), base.with_suffix(".safetensors")
    for p in (meta_path, tensor_path):
        if not p.is_file():
            raise FileNotFoundError(f"module set file not found: {p}")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != "samcl-module-set":
        raise CheckpointFormatError(f"{meta_path}: not a SAMCL module set (format={meta.get('format')!r})")
    cfg_d = dict(meta["config"])
    cfg_d["blocks"] = tuple(cfg_d["blocks"])
    if cfg_d.get("neck_dims") is not None:
        cfg_d["neck_dims"] = tuple(cfg_d["neck_dims"])
    cfg = AugConfig(**cfg_d)
    tensors = load_file(str(tensor_path))
    ms = ModuleSet(cfg)
    for name in meta["domains"]:
        prefix = f"module/{name}/"
        mod = AugModule(cfg)
        mod.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
        ms.add(name, mod)
    selector = None
    if "selector" in meta:
        selector = ModuleSelector(meta["selector"]["in_dim"], meta["selector"]["n_classes"])
        selector.load_state_dict({k[len("selector/"):]: v for k, v in tensors.items()
                                  if k.startswith("selector/")}, strict=True)
    buffer = None
    if "buffer" in meta:
        buffer = FeatureBuffer(meta["buffer"]["capacity"])
        for name in meta["buffer"]["domains"]:
            buffer.vectors[name] = tensors[f"buffer/{name}"]
    return ms, selector, buffer, meta
