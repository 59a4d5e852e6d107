"""Run configuration: a YAML file (default: benchmark/configs/default.yaml) plus dotted overrides."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from benchmark.backbones.base import ATTENTION_PATHS
from benchmark.engine.feature_cache import CACHE_DTYPES
from benchmark.engine.protocol import available_protocols
from scenarios.fileio import ConfigError, parse_value, read_yaml_mapping, set_dotted

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


@dataclass
class RunConfig:
    stream: str = "synthetic"
    stream_overrides: Dict[str, Any] = field(default_factory=dict)
    backbone: str = "sam_small"
    checkpoint: Optional[str] = "auto"
    methods: Union[str, List[str]] = "all"
    seeds: List[int] = field(default_factory=lambda: [1234])
    #: N domain orders per method and seed (the stream's own, then seeded shuffles; scenarios/
    #: config.py order_choices); null: the stream's explicit ``orders``, or its one order
    orders: Optional[int] = None
    device: str = "auto"
    output: str = "results"
    cache_dir: str = "cache/features"
    cache_dtype: str = "float32"
    num_workers: int = 0
    prefetch: int = 0                  # batches loaded ahead in a background thread (0: inline)
    jobs: Union[int, str] = 1          # runs at once in worker processes; auto: CPUs (1 on a GPU)
    progress: bool = True
    hparams: Dict[str, Any] = field(default_factory=dict)
    method_hparams: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    method_modules: List[str] = field(default_factory=list)
    protocol: str = "project"          # benchmark/configs/protocols/<name>.yaml (docs/protocol.md)
    resume: bool = True                # continue a killed run from its last finished domain
    deterministic: bool = False        # torch.use_deterministic_algorithms (GPU: see docs/scaling.md)
    precision: str = "fp32"            # fp32 | bf16 (autocast; GPU, or a CPU with native bf16)
    channels_last: bool = False        # channels-last tensors (a GPU speed option)
    threads: Optional[int] = 1         # torch intra-op threads per run (CPU sums depend on it); null: torch's own
    attention: str = "auto"            # auto | official | sdpa | folded: the SAM ViT attention path
    compile: bool = False              # torch.compile the blocks and the decoder (engine/compiled.py)
    tensorboard: Optional[str] = None  # a folder for TensorBoard scalars (needs `tensorboard`)
    wandb: Optional[str] = None        # a Weights & Biases project for losses and R rows
    csv_log: Optional[str] = None      # a folder for CSV logs of losses and R rows
    log_samples: bool = False          # per-image scores of every row, as CSV beside the record
    save_masks: int = 0                # predicted masks of the first N test images per domain
    #: each method's trained state after each domain into <output>/models/ (saved_models.py);
    #: auto = for the real backbones, not for the built-in benchmark's sam_small
    save_models: Union[str, bool] = "auto"
    source: str = "<defaults>"
    #: the dotted keys given on the command line (--set and the named options), for provenance
    overridden: List[str] = field(default_factory=list, metadata={"internal": True})

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)
                if not f.metadata.get("internal")}

    def origin(self, dotted: str) -> str:
        """Where the value at ``dotted`` came from: ``--set`` or the config file."""
        keys = dotted.split(".")
        given = any(k.split(".") == keys[:len(k.split("."))] for k in self.overridden)
        return "--set" if given else f"run config {Path(self.source).name}"


def load_run_config(path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> RunConfig:
    """Load a run config; ``overrides`` maps dotted keys (``method_hparams.lora.rank``) to values."""
    source = Path(path) if path else DEFAULT_CONFIG
    if not source.is_file():
        raise ConfigError(f"config file not found: {source}")
    data = read_yaml_mapping(source, ConfigError)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value, "override")
    known = {f.name: f for f in fields(RunConfig)}
    for key in data:
        if key not in known or key in ("source", "overridden"):
            raise ConfigError(f"{source}: unknown field {key!r}; known: "
                              f"{', '.join(k for k in known if k not in ('source', 'overridden'))}")
    cfg = RunConfig(**data, source=str(source), overridden=sorted(overrides or {}))
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
    need(cfg.orders is None or (isinstance(cfg.orders, int) and not isinstance(cfg.orders, bool)
                                and cfg.orders >= 1), "orders", "must be a positive integer or null")
    need(cfg.methods == "all" or (isinstance(cfg.methods, list) and cfg.methods),
         "methods", "must be 'all' or a non-empty list of method names")
    if isinstance(cfg.methods, list):
        twice = sorted({m for m in cfg.methods if cfg.methods.count(m) > 1})
        need(not twice, "methods", f"names {', '.join(map(repr, twice))} more than once")
    need(cfg.cache_dtype in CACHE_DTYPES, "cache_dtype",
         f"must be one of {', '.join(CACHE_DTYPES)}, got {cfg.cache_dtype!r}")
    need(isinstance(cfg.hparams, dict), "hparams", "must be a mapping")
    need(isinstance(cfg.method_hparams, dict) and all(isinstance(v, dict) for v in cfg.method_hparams.values()),
         "method_hparams", "must map method names to mappings")
    need(isinstance(cfg.stream_overrides, dict), "stream_overrides", "must be a mapping")
    for name in ("num_workers", "prefetch"):
        value = getattr(cfg, name)
        need(isinstance(value, int) and not isinstance(value, bool) and value >= 0, name,
             f"must be an integer >= 0, got {value!r}")
    need(cfg.jobs == "auto" or (isinstance(cfg.jobs, int) and not isinstance(cfg.jobs, bool)
                                and cfg.jobs >= 1), "jobs", f"must be 'auto' or an integer >= 1, got {cfg.jobs!r}")
    for name in ("wandb", "csv_log"):
        value = getattr(cfg, name)
        need(value is None or (isinstance(value, str) and value), name, "must be a name or null")
    need(isinstance(cfg.save_masks, int) and not isinstance(cfg.save_masks, bool)
         and cfg.save_masks >= 0, "save_masks", "must be an integer >= 0")
    for name in ("resume", "deterministic", "channels_last", "progress", "log_samples", "compile"):
        need(isinstance(getattr(cfg, name), bool), name, "must be true or false")
    need(cfg.precision in ("fp32", "bf16"), "precision", "must be fp32 or bf16")
    need(cfg.threads is None or (isinstance(cfg.threads, int) and not isinstance(cfg.threads, bool)
                                 and cfg.threads >= 1), "threads", "must be an integer >= 1 or null")
    need(cfg.attention in ATTENTION_PATHS, "attention",
         f"must be one of {', '.join(ATTENTION_PATHS)}, got {cfg.attention!r}")
    need(cfg.protocol in available_protocols(), "protocol",
         f"must name a protocol ({', '.join(available_protocols())}), got {cfg.protocol!r}")
    need(cfg.tensorboard is None or (isinstance(cfg.tensorboard, str) and cfg.tensorboard),
         "tensorboard", "must be a folder path or null")
    need(cfg.save_models == "auto" or isinstance(cfg.save_models, bool), "save_models",
         f"must be auto, true or false, got {cfg.save_models!r}")
    if cfg.checkpoint is not None and str(cfg.checkpoint).lower() == "none":
        cfg.checkpoint = None
