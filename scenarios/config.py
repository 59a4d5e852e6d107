"""Stream configuration: a YAML file (or a built-in name from scenarios/streams/) -> StreamConfig.

Relative domain roots and the synthetic cache_dir are resolved against the current working
directory when the stream is built (run from the repository root to use data/ and cache/).
"""
from __future__ import annotations

import dataclasses
import math
import random
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenarios.fileio import ConfigError, parse_value, read_yaml_mapping, set_dotted

STREAMS_DIR = Path(__file__).resolve().parent / "streams"
DEFAULT_STREAM = "synthetic"



@dataclass
class Prompts:
    num_points: int = 3
    seed: int = 1234


@dataclass
class DomainSpec:
    """A trained domain: `<root>/<train>/` and `<root>/<test>/` in the folder format."""
    name: str
    root: str = ""  # may be empty for synthetic streams: the generated folder of that name
    train: str = "train"
    test: str = "test"
    metrics: list[str] = field(default_factory=list)  # extra metrics (benchmark/reporting/domain_metrics.py)


@dataclass
class EvalDomainSpec:
    """An evaluation-only domain (never trained, always evaluated; COCO in the paper).

    ``train`` optionally names a split that is never trained on but that methods may keep
    samples of (SAMCL's selector buffer holds pooled features of the general domain).
    """
    name: str
    root: str = ""
    test: str = "test"
    train: str | None = None
    metrics: list[str] = field(default_factory=list)


@dataclass
class SyntheticSpec:
    """Settings of the built-in synthetic generator (scenarios/synthetic.py)."""
    seed: int = 0
    train_per_domain: int = 12
    test_per_domain: int = 8
    image_size: int | None = None  # generated side; defaults to the stream's image_size
    cache_dir: str = "cache/synthetic"


@dataclass
class StreamConfig:
    name: str
    domains: list[DomainSpec]
    image_size: int = 1024
    mask_reading: str = "threshold"  # or "reference": floor(v / 255), the SAMCL code's reading
    mask_threshold: int = 128
    #: a mask whose size differs from its image's: ``error`` (default) or ``resize`` (NEAREST)
    mask_size_mismatch: str = "error"
    prompts: Prompts = field(default_factory=Prompts)
    eval_only: list[EvalDomainSpec] = field(default_factory=list)
    order_seed: int | None = None  # seeded shuffle of the trained domains' order
    #: explicit training orders (each lists every trained domain once): a run makes one set of
    #: runs per order (``order_choices``); empty: the one order of ``domains`` / ``order_seed``
    orders: list[list[str]] = field(default_factory=list)
    #: a split every trained domain trains on instead of its own ``train`` (``test``: the SAMCL
    #: ViT-B script's training on the test images; docs/protocol.md). None: each domain's own.
    train_split: str | None = None
    synthetic: SyntheticSpec | None = None
    source: str = field(default="", metadata={"internal": True})  # the YAML file it came from

    def ordered_domains(self) -> list[DomainSpec]:
        """The trained domains in stream order (shuffled with `order_seed` when it is set)."""
        domains = list(self.domains)
        if self.order_seed is not None:
            random.Random(self.order_seed).shuffle(domains)
        return domains

    def domain_metrics(self) -> dict[str, list[str]]:
        """Domain name -> the extra metrics its spec declares (domains without any left out)."""
        return {d.name: list(d.metrics) for d in self.domains + self.eval_only if d.metrics}

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if out["train_split"] is None:  # unset, it leaves the dict (and so every run id) as before
            del out["train_split"]
        if out["mask_size_mismatch"] == "error":  # the default leaves run ids as before too
            del out["mask_size_mismatch"]
        if not out["orders"]:  # likewise; a run of one of the orders has its domains in that order
            del out["orders"]
        for spec in out["domains"] + out["eval_only"]:
            if not spec["metrics"]:  # likewise
                del spec["metrics"]
        return out


def order_choices(cfg: StreamConfig, count: int | None = None) -> list[dict]:
    """The stream overrides of each domain order to run (as a grid's ``order_seeds`` are):

    * the stream's explicit ``orders``: each lists the domains in that order (``domains``, with
      ``orders`` emptied), so a run of it is the run of a stream written in that order;
    * else ``count`` = N: the stream's own order (``{}``), then N - 1 seeded shuffles
      (``order_seed`` 1, 2, ..., skipping a seed whose order repeats an earlier one);
    * else ``[{}]``: the stream's one order.
    """
    src = cfg.source or cfg.name
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ConfigError(f"orders must be a positive integer, got {count!r}")
    if cfg.orders:
        if count is not None:
            raise ConfigError(f"{src}: the stream lists its orders (orders:); --orders {count} "
                              f"would replace them: give one")
        specs = {d.name: dataclasses.asdict(d) for d in cfg.domains}
        return [{"domains": [specs[n] for n in order], "orders": []} for order in cfg.orders]
    if count is None:
        return [{}]
    possible = math.factorial(len(cfg.domains))
    if count > possible:
        raise ConfigError(f"{src}: --orders {count}: {len(cfg.domains)} trained domains have only "
                          f"{possible} orders")
    seen, out, seed = [_names(cfg.ordered_domains())], [{}], 0
    while len(out) < count:
        seed += 1
        order = _names(dataclasses.replace(cfg, order_seed=seed).ordered_domains())
        if order not in seen:
            seen.append(order)
            out.append({"order_seed": seed})
    return out


def _names(specs) -> list[str]:
    return [d.name for d in specs]


def available_streams() -> list[str]:
    return sorted(p.stem for p in STREAMS_DIR.glob("*.yaml"))


def load_stream_config(name_or_path: str | Path | None = None, overrides: dict | None = None) -> StreamConfig:
    """Load a built-in stream by name (`synthetic`, the default, or `paper`) or a YAML file.

    `overrides`: dotted keys, e.g. {"image_size": 128, "synthetic.train_per_domain": 4}; string
    values are parsed as YAML scalars (so CLI strings like "128" work).
    """
    name_or_path = str(name_or_path or DEFAULT_STREAM)
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") and not path.exists():
        if name_or_path not in available_streams():
            raise ConfigError(f"unknown stream {name_or_path!r}: not a file, and not a built-in stream "
                              f"({', '.join(available_streams())})")
        path = STREAMS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"stream config not found: {path}")
    raw = read_yaml_mapping(path, ConfigError)
    raw.setdefault("name", path.stem)
    for key, value in _flatten(overrides or {}):
        set_dotted(raw, key, parse_value(value) if isinstance(value, str) else value, str(path))
    cfg = _build(StreamConfig, raw, str(path), "")
    cfg.source = str(path)
    _validate(cfg, str(path))
    return cfg


def _flatten(overrides: dict, prefix: str = ""):
    """(dotted key, value) pairs: a nested mapping (``{"synthetic": {"cache_dir": x}}``, as a run
    config stores ``stream_overrides.synthetic.cache_dir``) merges key by key into the stream's
    section instead of replacing the whole section."""
    for key, value in overrides.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _build(cls: type, data: Any, src: str, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: {where or 'top level'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{src}: unknown field {_join(where, unknown[0])!r} (known: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], src, _join(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{src}: missing field {_join(where, name)!r}")
    return cls(**kwargs)


def _convert(tp: Any, value: Any, src: str, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (tp,) = [a for a in args if a is not type(None)]
        return _convert(tp, value, src, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{src}: {where}: expected a list, got {type(value).__name__}")
        (item,) = args
        if dataclasses.is_dataclass(item):  # a bare string is shorthand for {name: ...}
            value = [{"name": v} if isinstance(v, str) else v for v in value]
        return [_convert(item, v, src, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, src, where)
    ok = (isinstance(value, tp) and not (tp is int and isinstance(value, bool))) or (
        tp is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{src}: {where}: expected {tp.__name__}, got {type(value).__name__} ({value!r})")
    return float(value) if tp is float else value


def _validate(cfg: StreamConfig, src: str) -> None:
    def fail(msg: str) -> None:
        raise ConfigError(f"{src}: {msg}")

    if cfg.image_size <= 0:
        fail(f"image_size must be positive, got {cfg.image_size}")
    if cfg.mask_reading not in ("threshold", "reference"):
        fail(f"mask_reading must be 'threshold' or 'reference', got {cfg.mask_reading!r}")
    if cfg.mask_size_mismatch not in ("error", "resize"):
        fail(f"mask_size_mismatch must be 'error' or 'resize', got {cfg.mask_size_mismatch!r}")
    if not 0 < cfg.mask_threshold <= 255:
        fail(f"mask_threshold must be in 1..255, got {cfg.mask_threshold}")
    if cfg.train_split is not None and not cfg.train_split.strip():
        fail("train_split must name a split folder (e.g. test) or be null")
    if cfg.prompts.num_points < 1:
        fail(f"prompts.num_points must be at least 1, got {cfg.prompts.num_points}")
    if not cfg.domains:
        fail("domains: at least one trained domain is needed")
    names = [d.name for d in cfg.domains + cfg.eval_only]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        fail(f"domain name {dup[0]!r} appears twice")
    _validate_orders(cfg, fail)
    for d in cfg.domains + cfg.eval_only:
        twice = sorted({m for m in d.metrics if d.metrics.count(m) > 1})
        if twice:
            fail(f"domain {d.name!r}: metric {twice[0]!r} listed twice")
    if cfg.synthetic is None:
        for kind, specs in (("domains", cfg.domains), ("eval_only", cfg.eval_only)):
            for i, d in enumerate(specs):
                if not d.root:
                    fail(f"{kind}[{i}].root: missing (needed unless the stream is synthetic)")
    else:
        from scenarios.synthetic import DOMAINS

        s = cfg.synthetic
        for d in cfg.domains + cfg.eval_only:
            if d.root:
                fail(f"domain {d.name!r}: root is not allowed in a synthetic stream (its folders are generated)")
        for n in names:
            if n not in DOMAINS:
                fail(f"unknown synthetic domain {n!r} (known: {', '.join(DOMAINS)})")
        if s.train_per_domain < 1 or s.test_per_domain < 1:
            fail("synthetic.train_per_domain and synthetic.test_per_domain must be at least 1")
        if s.image_size is not None and s.image_size <= 0:
            fail(f"synthetic.image_size must be positive, got {s.image_size}")


def _validate_orders(cfg: StreamConfig, fail) -> None:
    """Each of ``orders`` lists every trained domain once, and no order twice."""
    if cfg.orders and cfg.order_seed is not None:
        fail("orders and order_seed: give one (orders lists the orders to run; order_seed "
             "shuffles the one order)")
    trained = _names(cfg.domains)
    for i, order in enumerate(cfg.orders):
        unknown = [n for n in order if n not in trained]
        twice = sorted({n for n in order if order.count(n) > 1})
        missing = [n for n in trained if n not in order]
        if unknown:
            fail(f"orders[{i}]: {unknown[0]!r} is not a trained domain (trained: "
                 f"{', '.join(trained)})")
        if twice:
            fail(f"orders[{i}]: domain {twice[0]!r} appears twice")
        if missing:
            fail(f"orders[{i}]: misses {', '.join(missing)} (an order lists every trained "
                 f"domain once)")
        if order in cfg.orders[:i]:
            fail(f"orders[{i}]: repeats orders[{cfg.orders.index(order)}]")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
