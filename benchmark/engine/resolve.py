"""One resolution of what a run is: its hyper-parameters (with where each came from) and its
feature tap. The runner, ``grid``, ``cache`` and ``list --hparams`` all call :func:`resolve`; the
run id comes from the run's fingerprint (``fingerprint.py``), which needs these hyper-parameters.

Hyper-parameters are layered, later layers winning:
1. ``default``: the typed defaults the method file declares (``defaults``, through its bases);
2. ``preset``: the method's presets for this stream or backbone (``methods/configs/<name>.yaml``);
   then ``protocol <name>``: the run config's protocol's presets (``benchmark/engine/protocol.py``;
   none for the default ``project``), above the presets so that a protocol states its values
   whatever the stream;
3. ``hparams``: the run config's hyper-parameters for every method (only keys the method has);
4. ``method_hparams.<name>``: the run config's hyper-parameters for this method;
each of 3 and 4 marked ``--set`` when it came from the command line.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

from benchmark.core.registry import get_method, list_methods
from benchmark.engine.config import RunConfig
from benchmark.engine.protocol import hparam_layer, load_protocol


@dataclass
class Resolved:
    method: str
    cls: type
    hparams: Dict[str, Any]       # the values the run uses
    sources: Dict[str, str]       # name -> where its value came from
    tap: str


def hparam_layers(cfg: RunConfig, stream_name: str, cls: type) -> List[Tuple[str, Dict[str, Any]]]:
    """The (source, values) layers above the method's defaults, lowest first."""
    name = cls.method_name
    known = cls.declared_defaults()
    layers = list(cls.presets(stream=stream_name, backbone=cfg.backbone))
    protocol = hparam_layer(load_protocol(cfg.protocol), cls, cfg.backbone)
    if protocol:
        layers.append((f"protocol {cfg.protocol}", protocol))
    common = {k: v for k, v in cfg.hparams.items() if k in known}
    for key, value in common.items():
        layers.append((cfg.origin(f"hparams.{key}"), {key: value}))
    for key, value in cfg.method_hparams.get(name, {}).items():
        layers.append((cfg.origin(f"method_hparams.{name}.{key}"), {key: value}))
    return layers


def resolve(cfg: RunConfig, stream_cfg, method: str, seed: int) -> Resolved:
    """The hyper-parameters and tap of ``method`` with ``seed`` on ``stream_cfg``."""
    cls = get_method(method)
    sources = {key: "default" for key in cls.declared_defaults()}
    overrides: Dict[str, Any] = {}
    for source, values in hparam_layers(cfg, stream_cfg.name, cls):
        overrides.update(values)
        sources.update({key: source for key in values})
    hparams = cls.resolve_hparams(overrides)
    return Resolved(method=method, cls=cls, hparams=hparams, sources=sources,
                    tap=cls.tap_for(cfg.backbone, hparams))


def check_names(cfg: RunConfig, methods: Sequence[str]) -> None:
    """Every key of ``hparams`` must be a hyper-parameter of some method of the run, and every
    method of ``method_hparams`` a registered method; else a ValueError naming the key and the
    closest known names (a typo such as ``hparams.epoch`` would otherwise be ignored silently)."""
    known = sorted({k for m in methods for k in get_method(m).declared_defaults()})
    for key in cfg.hparams:
        if key not in known:
            raise ValueError(f"hparams.{key}: no method of this run has a hyper-parameter "
                             f"{key!r}{_closest(key, known)}")
    for name in cfg.method_hparams:
        if name not in list_methods():
            raise ValueError(f"method_hparams.{name}: unknown method{_closest(name, list_methods())}")


def _closest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    return f" (did you mean {', '.join(close)}?)" if close else f"; known: {', '.join(known)}"
