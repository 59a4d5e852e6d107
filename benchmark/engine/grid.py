"""Grids of runs: methods x seeds x domain orders x backbones, sharded over any launcher.

A grid YAML::

    config: my_run.yaml          # optional base run config (default: benchmark/configs/default.yaml)
    set: {hparams.epochs: 20}    # optional dotted overrides for every run
    methods: [finetune_decoder, samcl]
    seeds: [1, 2, 3]
    order_seeds: [null, 1, 2]    # optional: the stream's order_seed (null: unshuffled)
    backbones: [sam_vit_b, sam2.1_hiera_t]
    output: results/grid         # optional (else the base config's output)

Without ``order_seeds`` the domain orders are those of the base config, as ``run`` makes them
(``orders: N`` in ``set``, or the stream's explicit ``orders``; ``scenarios.config.order_choices``),
so a grid and a plain run of one order share run ids. Runs are enumerated in a stable order
(backbone, order, method, seed); run k belongs to shard ``k % n``. A run whose record
(identified by the run id in ``extra.run_id``: a hash of its fingerprint, weights' and data's
content included, ``fingerprint.py``) is already in the output folder is skipped, so a grid can
be restarted, extended or spread over machines; changed weights or data behind the same paths
make the runs to do again.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from benchmark.core import distributed
from benchmark.engine.config import load_run_config
from benchmark.engine.context import prepare
from benchmark.engine.fingerprint import identify
from benchmark.engine.observers import default_observers
from benchmark.engine.protocol import stream_config
from benchmark.engine.resolve import resolve
from benchmark.engine.run import check_output, resolve_methods, run_one
from benchmark.reporting.records import load_records
from scenarios.config import order_choices
from scenarios.stream import data_fingerprint
from scenarios.fileio import ConfigError, read_yaml_mapping

GRID_KEYS = {"config", "set", "methods", "seeds", "order_seeds", "backbones", "output"}


class GridError(ConfigError):
    """A bad grid file or --shard value."""


@dataclass
class GridRun:
    index: int
    backbone: str
    order: Dict[str, Any]   # the stream overrides that choose the order ({}: the stream's own)
    method: str
    seed: int
    run_id: str = ""
    done: bool = False

    def label(self) -> str:
        if "domains" in self.order:
            order = "→".join(d["name"] for d in self.order["domains"])
        else:
            order = self.order.get("order_seed", "default")
        return f"{self.method} {self.backbone} order={'default' if order is None else order} " \
               f"seed={self.seed}"

    def order_key(self) -> Tuple[str, str]:
        return self.backbone, json.dumps(self.order, sort_keys=True)


@dataclass
class Grid:
    path: str
    base_config: Optional[str]
    overrides: Dict[str, Any]
    methods: List[str]
    seeds: List[int]
    orders: List[Dict[str, Any]]   # stream overrides per domain order
    backbones: List[str]

    def runs(self) -> List[GridRun]:
        out: List[GridRun] = []
        for backbone in self.backbones:
            for order in self.orders:
                for method in self.methods:
                    for seed in self.seeds:
                        out.append(GridRun(len(out), backbone, order, method, seed))
        return out

    def run_config(self, run: GridRun):
        """The RunConfig of one grid run (one method, one seed)."""
        overrides = dict(self.overrides)
        overrides.update({"backbone": run.backbone, "methods": [run.method], "seeds": [run.seed]})
        overrides.update({f"stream_overrides.{k}": v for k, v in run.order.items()})
        return load_run_config(self.base_config, overrides)


def load_grid(path: str | Path, extra_overrides: Optional[Dict[str, Any]] = None) -> Grid:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid file not found: {path}")
    data = read_yaml_mapping(path, GridError)
    unknown = set(data) - GRID_KEYS
    if unknown:
        raise GridError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}; "
                        f"known: {', '.join(sorted(GRID_KEYS))}")

    def listed(key: str, kind, default):
        value = data.get(key, default)
        value = value if isinstance(value, list) else [value]
        if not value or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
            raise GridError(f"{path}: field {key!r} must be a non-empty list of {kind}")
        return value

    overrides = data.get("set") or {}
    if not isinstance(overrides, dict):
        raise GridError(f"{path}: field 'set' must map dotted keys to values")
    overrides = dict(overrides)
    if "output" in data:
        overrides["output"] = str(data["output"])
    overrides.update(extra_overrides or {})
    base = data.get("config")
    if base is not None:
        base = str((path.parent / base) if not Path(base).is_absolute() and not Path(base).exists()
                   else base)
    methods = listed("methods", str, None) if "methods" in data else None
    if methods is None:
        raise GridError(f"{path}: field 'methods' is required")
    base_cfg = load_run_config(base, overrides)
    choices = order_choices(stream_config(base_cfg), base_cfg.orders)
    if "order_seeds" in data:
        if choices != [{}]:
            raise GridError(f"{path}: order_seeds and the base config's orders (orders: N in "
                            f"set, or the stream's explicit orders): give one")
        choices = [{"order_seed": s} for s in listed("order_seeds", (int, type(None)), [None])]
    return Grid(path=str(path), base_config=base, overrides=overrides, methods=methods,
                seeds=listed("seeds", int, [1234]), orders=choices,
                backbones=listed("backbones", str, ["sam_small"]))


def parse_shard(text: Optional[str]) -> Tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n; None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise GridError(f"--shard expects i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise GridError(f"--shard {text}: need 0 <= i < n")
    return i, n


def existing_run_ids(output: str | Path) -> set:
    if not Path(output).is_dir():
        return set()
    return {r.extra.get("run_id") for r in load_records(output)} - {None}


def resolve_grid(grid: Grid) -> List[GridRun]:
    """Every run of the grid with its run id (``engine.resolve``, as the runner computes it) and
    whether its record already exists."""
    runs = grid.runs()
    done_ids: Dict[str, set] = {}
    data: Dict[str, dict] = {}  # stream config -> its data fingerprint (listed once)
    for run in runs:
        cfg = grid.run_config(run)
        resolve_methods(cfg)  # imports method modules; checks the name
        stream_cfg = stream_config(cfg)
        key = json.dumps(stream_cfg.to_dict(), sort_keys=True, default=str)
        if key not in data:
            data[key] = data_fingerprint(stream_cfg, progress=False, cache_dir=cfg.cache_dir)
        hparams = resolve(cfg, stream_cfg, run.method, run.seed).hparams
        run.run_id = identify(cfg, stream_cfg, run.method, run.seed, hparams, data=data[key]).run_id
        if cfg.output not in done_ids:
            done_ids[cfg.output] = existing_run_ids(cfg.output)
        run.done = run.run_id in done_ids[cfg.output]
    return runs


def run_grid(grid: Grid, shard: Tuple[int, int] = (0, 1), dry_run: bool = False,
             progress: bool = True) -> List[GridRun]:
    """Run this shard's pending runs (sharing the backbone and cache between consecutive runs of
    the same backbone and order); returns the shard's runs."""
    from tqdm.auto import tqdm

    i, n = shard
    mine = [r for r in resolve_grid(grid) if r.index % n == i]
    for r in mine:
        print(f"  [{r.index:4d}] {r.run_id}  {'done ' if r.done else 'to do'}  {r.label()}", flush=True)
    todo = [r for r in mine if not r.done]
    print(f"grid {grid.path}: shard {i}/{n} has {len(mine)} run(s), {len(todo)} to do", flush=True)
    if dry_run or not todo:
        return mine
    ctx, key = None, None
    try:
        for r in tqdm(todo, desc="grid", unit="run", disable=not progress):
            cfg = grid.run_config(r)
            if r.order_key() != key:
                check_output(cfg.output)
                ctx, key = prepare(cfg), r.order_key()
            run_one(ctx, cfg, r.method, r.seed, default_observers(cfg, progress and cfg.progress))
            r.done = True
    finally:
        distributed.teardown()
    return mine
