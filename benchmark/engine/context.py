"""What all runs of one benchmark invocation share: device, backbone, stream and feature cache."""
from __future__ import annotations

import importlib.util
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Dict, Sequence

import numpy as np
import torch

from benchmark.backbones import build_backbone
from benchmark.core import distributed
from benchmark.engine.config import RunConfig
from benchmark.engine.feature_cache import FeatureCache
from benchmark.engine.protocol import stream_config
from benchmark.reporting.domain_metrics import check_metric_names
from scenarios.stream import build_domain_stream, data_fingerprint


def valid_devices() -> list[str]:
    """The ``device`` values this machine accepts."""
    return ["auto", "cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
                              if torch.cuda.is_available() else [])


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; anything else,
    or a device this machine lacks, is a one-line error listing the valid values."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    valid = valid_devices()
    if str(name) not in valid:
        why = ("CUDA is not available" if str(name).startswith("cuda") and not torch.cuda.is_available()
               else "not a device of this machine")
        raise ValueError(f"device {name!r}: {why}; valid here: {', '.join(valid)}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def configure_determinism(on: bool) -> None:
    """``--deterministic``: deterministic algorithms where torch has them (warns where it has not,
    e.g. some CUDA backward passes); cuDNN autotuning off."""
    if not on:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matrix products natively (CUDA: Ampere or newer; CPU: the
    oneDNN check for avx512_bf16 / AMX). bf16 autocast works everywhere, but emulated it is slow."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private oneDNN probe: absent in some builds
        return False


@dataclass
class RunContext:
    """Shared by the runs of one invocation (and by consecutive grid runs of one backbone and
    order); each run trains on a deep copy of the pristine ``backbone``."""
    device: torch.device
    backbone: torch.nn.Module
    stream: object                     # scenarios.stream.DomainStream
    stream_cfg: object                 # scenarios.config.StreamConfig
    cache: FeatureCache
    views: Dict[str, tuple] = field(default_factory=dict)  # tap -> (train, test, general) views
    cache_seconds: float = 0.0
    data: Dict[str, dict] = field(default_factory=dict)  # scenarios.stream.data_fingerprint
    #: row 0 of runs whose methods start as the frozen backbone, by ``run.shared_row_key``
    shared_rows: Dict[str, dict] = field(default_factory=dict)

    def views_at(self, tap: str):
        """Cached-feature views of every domain at ``tap``, built (once) on first use."""
        self.prepare_taps([tap])
        return self.views[tap]

    def prepare_taps(self, taps: Sequence[str]) -> None:
        """Build the views of every domain at each of ``taps`` not yet built; a dataset's missing
        cache entries are computed in one encoder pass (``FeatureCache.views``)."""
        todo = [tap for tap in dict.fromkeys(taps) if tap not in self.views]
        if not todo:
            return
        start = time.perf_counter()
        with distributed.main_process_first():  # rank 0 builds missing entries, then the rest read
            s = self.stream
            groups = [[self.cache.views(self.backbone, ds, todo) for ds in group]
                      for group in (s.train_datasets, s.test_datasets, s.general_datasets)]
        for tap in todo:
            self.views[tap] = tuple([by_tap[tap] for by_tap in group] for group in groups)
        self.cache_seconds += time.perf_counter() - start


def check_options(cfg: RunConfig, device: torch.device) -> None:
    if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ValueError("config field 'tensorboard' needs the tensorboard package "
                         "(pip install tensorboard)")
    if cfg.wandb and importlib.util.find_spec("wandb") is None:
        raise ValueError("config field 'wandb' needs the wandb package (pip install wandb)")
    if (cfg.log_samples or cfg.save_masks) and distributed.is_distributed():
        raise ValueError("config fields 'log_samples' and 'save_masks' need one process (under "
                         "torchrun each process scores only its shard)")
    if cfg.precision == "bf16" and not native_bf16(device):
        warnings.warn(f"precision=bf16 on {device}: no native bf16 (a CPU needs avx512_bf16 or AMX, "
                      f"a GPU Ampere or newer), so bf16 is emulated and likely slower than fp32")


def prepare(cfg: RunConfig) -> RunContext:
    """Device, stream (generated first if synthetic), backbone and feature cache of ``cfg``."""
    device = distributed.setup(resolve_device(cfg.device))
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)  # the summation order of CPU kernels depends on it
    configure_determinism(cfg.deterministic)
    check_options(cfg, device)
    stream_cfg = stream_config(cfg)  # the stream, the protocol's items, stream_overrides
    check_metric_names(stream_cfg.domain_metrics(), stream_cfg.source)
    with distributed.main_process_first():  # a synthetic stream is generated by rank 0 only
        stream = build_domain_stream(stream_cfg, progress=cfg.progress)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random weights (checkpoint none) are the same in every process
        backbone = build_backbone(cfg.backbone, checkpoint=cfg.checkpoint, device=str(device))
    backbone.set_attention(cfg.attention)
    if backbone.image_size != stream_cfg.image_size:
        raise ValueError(f"stream {stream_cfg.name!r} has image_size {stream_cfg.image_size} but "
                         f"backbone {cfg.backbone!r} expects {backbone.image_size}; set "
                         f"stream_overrides.image_size or choose another backbone")
    cache = FeatureCache(cfg.cache_dir, dtype=cfg.cache_dtype, progress=cfg.progress)
    return RunContext(device=device, backbone=backbone, stream=stream, stream_cfg=stream_cfg,
                      cache=cache, data=data_fingerprint(stream_cfg, cfg.progress, cfg.cache_dir))
