"""Import the reference's released SAMCL checkpoints; save / load our module sets safely.

Released files (``SAM1/<domain>.pth``, ``SAM2/<domain>.pth``) are read with
:func:`methods.samcl.safe_pickle.safe_load` (no pickled code runs); ``Module_Selector.pth`` is a
plain state_dict and goes through ``torch.load(weights_only=True)``. Our own module sets are saved as
safetensors plus a JSON of metadata (never pickles).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from methods.samcl.augmodule import AugConfig, AugModule, ModuleSet, hiera_t_config, vit_config
from methods.samcl.safe_pickle import CheckpointFormatError, ModuleState, safe_load
from methods.samcl.selector import FeatureBuffer, ModuleSelector
from scenarios.fileio import atomic_path, atomic_write_text

# Class order of the released selectors and the file names of the released modules.
OFFICIAL_DOMAINS = ("Kvasir", "camo", "ISTD", "ISIC", "cod", "COCO")
OFFICIAL_GENERAL = ("COCO",)
FORMAT_VERSION = 1


def _linear(state: ModuleState, src: str, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, ModuleState):
        raise CheckpointFormatError(f"{src}: {what} is {type(state).__name__}, expected a module")
    sd = state.state_dict()
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
    extra = obj["extra"].state_dict() if isinstance(obj["extra"], ModuleState) else None
    if extra is None:
        raise CheckpointFormatError(f"{src}: 'extra' is not a module")
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


def load_official_module(path: str | Path) -> AugModule:
    """One released ``<domain>.pth`` as an AugModule (reference quirks on)."""
    cfg, sd = official_to_state_dict(safe_load(path), str(path))
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


def load_official_set(folder: str | Path, domains: tuple[str, ...] = OFFICIAL_DOMAINS
                      ) -> tuple[ModuleSet, ModuleSelector, list[str]]:
    """A released folder (``SAM1`` or ``SAM2``): every ``<domain>.pth`` present + the selector.

    Returns (module set, selector, class names in selector order); classes without a module file
    (COCO) route to vanilla SAM.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"released SAMCL folder not found: {folder}")
    mods = {d: load_official_module(folder / f"{d}.pth") for d in domains if (folder / f"{d}.pth").is_file()}
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
