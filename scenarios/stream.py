"""A stream of domains: folder datasets in stream order, and their Avalanche benchmark."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from scenarios.config import StreamConfig
from scenarios.fileio import cached_sha256
from scenarios.folder import FolderSegmentationDataset, read_manifest_fingerprint, split_files
from scenarios.synthetic import generate_synthetic_stream, synthetic_settings

#: the file in a cache folder that remembers the data files' sha256 (data_fingerprint)
FILES_CACHE = "files_sha256.json"


@dataclass
class DomainStream:
    config: StreamConfig
    domain_names: list[str]  # trained domains in stream order, then evaluation-only ones
    trained: int  # T: the first T domains are trained
    train_datasets: list[FolderSegmentationDataset]  # T
    test_datasets: list[FolderSegmentationDataset]  # all domains
    general_datasets: list[FolderSegmentationDataset] = field(default_factory=list)
    # ^ train splits of evaluation-only domains that have one: never trained on

    def to_avalanche(self) -> Any:
        return to_avalanche(self.train_datasets, self.test_datasets)


def build_domain_stream(cfg: StreamConfig, progress: bool = True) -> DomainStream:
    """Datasets of every domain; a synthetic stream is generated (or reused from its cache) first
    (with a progress bar unless ``progress`` is false).

    Relative roots resolve against the current working directory.
    """
    root = domain_roots(cfg, progress)
    common = dict(image_size=cfg.image_size, mask_reading=cfg.mask_reading, mask_threshold=cfg.mask_threshold,
                  num_points=cfg.prompts.num_points, points_seed=cfg.prompts.seed,
                  mask_size_mismatch=cfg.mask_size_mismatch)
    trained = cfg.ordered_domains()
    train, test, general = [], [], []
    for i, spec in enumerate(trained):
        split = spec.train if cfg.train_split is None else cfg.train_split
        train.append(FolderSegmentationDataset(root[spec.name], split, domain_index=i, domain_name=spec.name, **common))
        test.append(FolderSegmentationDataset(root[spec.name], spec.test, domain_index=i, domain_name=spec.name, **common))
    for j, spec in enumerate(cfg.eval_only, start=len(trained)):
        test.append(FolderSegmentationDataset(root[spec.name], spec.test, domain_index=j, domain_name=spec.name, **common))
        if spec.train:
            general.append(FolderSegmentationDataset(root[spec.name], spec.train, domain_index=j,
                                                     domain_name=spec.name, **common))
    names = [s.name for s in trained] + [s.name for s in cfg.eval_only]
    return DomainStream(cfg, names, len(trained), train, test, general)


def domain_roots(cfg: StreamConfig, progress: bool = True) -> dict[str, Path]:
    """Domain name -> the folder it is read from; a synthetic stream is generated (or reused from
    its cache) first. Relative roots resolve against the current working directory."""
    generated = None
    if cfg.synthetic is not None:
        generated = generate_synthetic_stream(cfg, progress=progress)
    return {spec.name: generated / spec.name if generated is not None
            else Path(spec.root).expanduser().resolve() for spec in [*cfg.domains, *cfg.eval_only]}


def data_fingerprint(cfg: StreamConfig, progress: bool = True,
                     cache_dir: str | Path | None = None) -> dict[str, dict]:
    """Domain -> what identifies the data a run of ``cfg`` reads there: ``files`` (a hash of the
    name and sha256 of every image and mask file of the splits it reads, ``points.json``
    included: :func:`scenarios.folder.split_files`), ``manifest`` (the ``prepare`` manifest's
    fingerprint, when the folder has one) and, for a synthetic stream, ``generator`` (the
    generator's settings). No path or time enters it, so machines holding the same bytes agree.
    Each file is read once per version: digests are remembered in ``<cache_dir>/``
    :data:`FILES_CACHE` (:func:`scenarios.fileio.cached_sha256`; without ``cache_dir`` every file
    is hashed), with a progress bar unless ``progress`` is false."""
    roots = domain_roots(cfg, progress)
    splits = {s.name: [s.train if cfg.train_split is None else cfg.train_split, s.test] for s in cfg.domains}
    splits.update({s.name: [s.test] + ([s.train] if s.train else []) for s in cfg.eval_only})
    files = {(name, split): split_files(roots[name] / split) for name in splits for split in set(splits[name])}
    paths = [p for listed in files.values() for p in listed or ()]
    cache_file = None if cache_dir is None else Path(cache_dir) / FILES_CACHE
    digest = dict(zip(paths, cached_sha256(paths, cache_file, progress)))
    out = {}
    for name in sorted(splits):
        listing = {split: None if files[name, split] is None else
                   [[p.parent.name, p.name, digest[p]] for p in files[name, split]]
                   for split in sorted(set(splits[name]))}
        entry = {"files": hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()[:16]}
        manifest = read_manifest_fingerprint(roots[name])
        if manifest:
            entry["manifest"] = manifest
        if cfg.synthetic is not None:  # what generates each domain (the domain lists aside)
            entry["generator"] = {k: v for k, v in synthetic_settings(cfg).items()
                                  if k not in ("domains", "eval_only")}
        out[name] = entry
    return out


def to_avalanche(train_datasets: Sequence[Dataset], test_datasets: Sequence[Dataset]) -> Any:
    """A CLScenario with one train experience per trained domain and one test experience per domain.

    The task label of an experience is its domain index (item["domain"]), read without decoding
    images: datasets may be feature-cache views whose items carry `features` instead of `image`.
    """
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.scenarios.task_aware import with_task_labels
    from avalanche.benchmarks.utils import AvalancheDataset
    from avalanche.benchmarks.utils.data_attribute import DataAttribute

    def wrap(ds: Dataset) -> AvalancheDataset:
        labels = [_domain_of(ds)] * len(ds)
        return AvalancheDataset([ds], data_attributes=[DataAttribute(labels, "targets_task_labels")],
                                collate_fn=collate_samples)

    return with_task_labels(benchmark_from_datasets(train=[wrap(d) for d in train_datasets],
                                                    test=[wrap(d) for d in test_datasets]))


def _domain_of(ds: Dataset) -> int:
    if hasattr(ds, "domain_index"):
        return int(ds.domain_index)
    if hasattr(ds, "load_target"):
        return int(ds.load_target(0)["domain"])
    return int(ds[0]["domain"])


#: the half-precision dtypes a feature cache may serve (``cache_dtype``); computation is float32
HALF_DTYPES = (torch.float16, torch.bfloat16)


def to_device(batch: Any, device) -> Any:
    """A collated batch (tensors, nested dicts of tensors, other values) moved to ``device``;
    half-precision tensors (cached features stored as float16 / bfloat16) become float32 there,
    after the copy (the exact widening, wherever it runs; autocast picks lower precision itself)."""
    if torch.is_tensor(batch):
        batch = batch.to(device, non_blocking=True)
        return batch.float() if batch.dtype in HALF_DTYPES else batch
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def collate_samples(items: list[dict]) -> dict:
    """Collate sample dicts: tensors are stacked, nested dicts (e.g. `features`) collated by key,
    numbers become tensors, anything else (e.g. names) is kept as a list."""
    out = {}
    for key, first in items[0].items():
        values = [it[key] for it in items]
        if isinstance(first, torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(first, dict):
            out[key] = collate_samples(values)
        elif isinstance(first, (bool, int, float)):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out
