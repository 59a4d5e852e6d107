"""Run configuration: a YAML file (default: benchmark/configs/default.yaml) plus dotted overrides."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import yaml

from scenarios.yamlio import read_yaml_mapping

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"
METHOD_CONFIGS = Path(__file__).resolve().parents[1] / "methods" / "configs"


class ConfigError(ValueError):
    """A configuration file or override is invalid (the message names the file and field)."""


@dataclass
class RunConfig:
    stream: str = "synthetic"
    stream_overrides: Dict[str, Any] = field(default_factory=dict)
    backbone: str = "sam_small"
    checkpoint: Optional[str] = "auto"
    methods: Union[str, List[str]] = "all"
    seeds: List[int] = field(default_factory=lambda: [1234])
    device: str = "auto"
    output: str = "results"
    cache_dir: str = "cache/features"
    cache_dtype: str = "float32"
    num_workers: int = 0
    progress: bool = True
    hparams: Dict[str, Any] = field(default_factory=dict)
    method_hparams: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    method_modules: List[str] = field(default_factory=list)
    resume: bool = True                # continue a killed run from its last finished domain
    deterministic: bool = False        # torch.use_deterministic_algorithms (GPU: see docs/scaling.md)
    precision: str = "fp32"            # fp32 | bf16 (autocast; GPU, or a CPU with native bf16)
    channels_last: bool = False        # channels-last tensors (a GPU speed option)
    tensorboard: Optional[str] = None  # a folder for TensorBoard scalars (needs `tensorboard`)
    source: str = "<defaults>"

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


def parse_value(text: str) -> Any:
    """A command-line value parsed as YAML (``3`` -> int, ``[a, b]`` -> list, ``none`` -> None)."""
    if text.strip().lower() in {"none", "null"}:
        return None
    return yaml.safe_load(text)


def apply_override(data: Dict[str, Any], dotted: str, value: Any, source: str) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        if not isinstance(node.get(key, {}), dict):
            raise ConfigError(f"{source}: {dotted}: {key!r} is not a mapping")
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def load_run_config(path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> RunConfig:
    """Load a run config; ``overrides`` maps dotted keys (``method_hparams.lora.rank``) to values."""
    source = Path(path) if path else DEFAULT_CONFIG
    if not source.is_file():
        raise ConfigError(f"config file not found: {source}")
    data = read_yaml_mapping(source, ConfigError)
    for key, value in (overrides or {}).items():
        apply_override(data, key, value, "override")
    known = {f.name: f for f in fields(RunConfig)}
    for key in data:
        if key not in known or key == "source":
            raise ConfigError(f"{source}: unknown field {key!r}; known: "
                              f"{', '.join(k for k in known if k != 'source')}")
    cfg = RunConfig(**data, source=str(source))
    _validate(cfg, str(source))
    return cfg


def _validate(cfg: RunConfig, source: str) -> None:
    def need(cond: bool, field_name: str, what: str) -> None:
        if not cond:
            raise ConfigError(f"{source}: field {field_name!r} {what}")

    if isinstance(cfg.seeds, int):
        cfg.seeds = [cfg.seeds]
    need(isinstance(cfg.seeds, list) and cfg.seeds and all(isinstance(s, int) for s in cfg.seeds),
         "seeds", "must be a non-empty list of integers")
    if isinstance(cfg.methods, str) and cfg.methods != "all":
        cfg.methods = [m.strip() for m in cfg.methods.split(",") if m.strip()]
    need(cfg.methods == "all" or (isinstance(cfg.methods, list) and cfg.methods),
         "methods", "must be 'all' or a non-empty list of method names")
    need(cfg.cache_dtype in ("float32", "float16"), "cache_dtype", "must be float32 or float16")
    need(isinstance(cfg.hparams, dict), "hparams", "must be a mapping")
    need(isinstance(cfg.method_hparams, dict) and all(isinstance(v, dict) for v in cfg.method_hparams.values()),
         "method_hparams", "must map method names to mappings")
    need(isinstance(cfg.stream_overrides, dict), "stream_overrides", "must be a mapping")
    need(isinstance(cfg.num_workers, int) and cfg.num_workers >= 0, "num_workers", "must be an integer >= 0")
    for name in ("resume", "deterministic", "channels_last", "progress"):
        need(isinstance(getattr(cfg, name), bool), name, "must be true or false")
    need(cfg.precision in ("fp32", "bf16"), "precision", "must be fp32 or bf16")
    need(cfg.tensorboard is None or (isinstance(cfg.tensorboard, str) and cfg.tensorboard),
         "tensorboard", "must be a folder path or null")
    if cfg.checkpoint is not None and str(cfg.checkpoint).lower() == "none":
        cfg.checkpoint = None


def method_defaults_from_yaml(name: str) -> Dict[str, Any]:
    """Hyper-parameter defaults declared in methods/configs/<name>.yaml (empty when absent)."""
    path = METHOD_CONFIGS / f"{name}.yaml"
    if not path.is_file():
        return {}
    return read_yaml_mapping(path, ConfigError)


def method_hparams(cfg: RunConfig, name: str, known: Dict[str, Any]) -> Dict[str, Any]:
    """Hyper-parameter overrides for ``name``: YAML defaults, then run-wide, then per-method."""
    merged: Dict[str, Any] = {}
    merged.update(method_defaults_from_yaml(name))
    merged.update({k: v for k, v in cfg.hparams.items() if k in known})
    merged.update(cfg.method_hparams.get(name, {}))
    return merged
