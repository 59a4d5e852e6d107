"""Protocols: named sets of settings that reproduce another code base's way of running the stream.

A protocol is ``benchmark/configs/protocols/<name>.yaml``; the run config's ``protocol`` field (and
``--protocol NAME``) picks one. ``project`` (the default) changes nothing. Every item of a protocol
file is ``{value: ..., reason: ...}``, in three sections:

- ``hparams``: hyper-parameter presets, sections keyed ``<method>`` or ``<method> backbone:<family>``
  (family ``sam`` or ``sam2``); a method's section applies to the methods derived from it, and
  ``base`` (the template, ``SAMStrategy``) to every method. :func:`benchmark.engine.resolve.resolve`
  applies them as one layer above the method presets and below the run config, with the source
  ``protocol <name>``;
- ``stream``: stream-config overrides (e.g. ``mask_reading``), below the run config's
  ``stream_overrides`` (:func:`stream_config`); ``train_split`` is refused here (a protocol never
  trains on test images: that is only ever an explicit stream option);
- ``evaluation``: settings of the loss and the scores that are not hyper-parameters (so no method's
  hyper-parameters and no run id change with them; the protocol name enters the run id instead),
  sections ``all`` or ``backbone:<family>``: ``upscale`` (``bilinear`` | ``nearest``: how the
  decoder's low-res logits reach the mask size, in the loss and in every score) and ``iou_loss``
  (``project`` | ``reference``: see ``benchmark.core.losses.sam_loss``). :func:`apply_evaluation`
  sets them on the strategy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Tuple

from benchmark.backbones.base import UPSCALE_MODES
from benchmark.core.losses import IOU_LOSSES
from scenarios.fileio import ConfigError, read_yaml_mapping

PROTOCOLS_DIR = Path(__file__).resolve().parents[1] / "configs" / "protocols"
DEFAULT_PROTOCOL = "project"
FAMILIES = ("sam", "sam2")
#: evaluation settings: name -> (allowed values, the value when no protocol sets it)
EVALUATION = {"upscale": (UPSCALE_MODES, "bilinear"), "iou_loss": (IOU_LOSSES, "project")}


@dataclass(frozen=True)
class Protocol:
    name: str
    #: (method, family or None) -> {hyper-parameter: value}
    hparams: Dict[Tuple[str, Any], Dict[str, Any]] = field(default_factory=dict)
    stream: Dict[str, Any] = field(default_factory=dict)
    #: family or None (all) -> {setting: value}
    evaluation: Dict[Any, Dict[str, Any]] = field(default_factory=dict)
    reasons: Dict[str, str] = field(default_factory=dict)  # "<section>.<key>" -> why


def available_protocols() -> List[str]:
    return sorted(p.stem for p in PROTOCOLS_DIR.glob("*.yaml"))


@lru_cache(maxsize=None)
def load_protocol(name: str = DEFAULT_PROTOCOL) -> Protocol:
    """The protocol ``name`` (a file of PROTOCOLS_DIR); an unknown name or a malformed file is a
    ConfigError."""
    path = PROTOCOLS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown protocol {name!r}; known: {', '.join(available_protocols())}")
    raw = read_yaml_mapping(path)
    unknown = sorted(set(raw) - {"description", "hparams", "stream", "evaluation"})
    if unknown:
        raise ConfigError(f"{path}: unknown section {unknown[0]!r} (known: description, hparams, "
                          f"stream, evaluation)")
    reasons: Dict[str, str] = {}
    hparams = {_hparam_section(path, key): _items(path, f"hparams.{key}", values, reasons)
               for key, values in (raw.get("hparams") or {}).items()}
    stream = _items(path, "stream", raw.get("stream") or {}, reasons)
    if "train_split" in stream:
        raise ConfigError(f"{path}: stream.train_split cannot come from a protocol (training on "
                          f"another split is only ever an explicit stream option)")
    evaluation = {_family_section(path, key): _items(path, f"evaluation.{key}", values, reasons)
                  for key, values in (raw.get("evaluation") or {}).items()}
    for settings in evaluation.values():
        for key, value in settings.items():
            if key not in EVALUATION or value not in EVALUATION[key][0]:
                raise ConfigError(f"{path}: evaluation setting {key}={value!r}; known: " + ", ".join(
                    f"{k} in {'|'.join(v[0])}" for k, v in EVALUATION.items()))
    return Protocol(name, hparams, stream, evaluation, reasons)


def _items(path: Path, where: str, values: Any, reasons: Dict[str, str]) -> Dict[str, Any]:
    """``{key: {value, reason}}`` -> ``{key: value}``, the reasons into ``reasons``."""
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: {where} must be a mapping")
    out = {}
    for key, item in values.items():
        if not (isinstance(item, dict) and set(item) == {"value", "reason"} and item["reason"]):
            raise ConfigError(f"{path}: {where}.{key} must be {{value: ..., reason: ...}} "
                              f"with a non-empty reason")
        out[key] = item["value"]
        reasons[f"{where}.{key}"] = str(item["reason"])
    return out


def _family(path: Path, text: str) -> str:
    kind, _, family = text.partition(":")
    if kind != "backbone" or family not in FAMILIES:
        raise ConfigError(f"{path}: {text!r} must be backbone:<{'|'.join(FAMILIES)}>")
    return family


def _hparam_section(path: Path, key: str) -> Tuple[str, Any]:
    """``"samcl"`` -> ("samcl", None); ``"base backbone:sam2"`` -> ("base", "sam2")."""
    method, _, rest = str(key).partition(" ")
    return method, (_family(path, rest.strip()) if rest.strip() else None)


def _family_section(path: Path, key: str) -> Any:
    return None if key == "all" else _family(path, str(key))


def backbone_family(backbone: str) -> str:
    """``sam`` (segment_anything models, the small SAM included) or ``sam2``."""
    from benchmark.backbones.registry import model_info

    try:
        return model_info(backbone).family
    except ValueError:  # an unregistered name: tell by the name, as the methods' tap_for does
        return "sam2" if backbone.startswith("sam2") else "sam"


def hparam_layer(protocol: Protocol, cls: type, backbone: str) -> Dict[str, Any]:
    """The protocol's hyper-parameters for ``cls`` on ``backbone``: its sections for every method
    ``cls`` derives from (base first), each family section after the plain one."""
    family = backbone_family(backbone)
    values: Dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        name = klass.__dict__.get("method_name")
        for fam in (None, family):
            values.update(protocol.hparams.get((name, fam), {}) if name else {})
    return values


def evaluation_settings(protocol: Protocol, backbone: str) -> Dict[str, Any]:
    """Every evaluation setting for ``backbone``: the defaults, the protocol's ``all`` section,
    then its section for the backbone's family."""
    out = {key: default for key, (_, default) in EVALUATION.items()}
    out.update(protocol.evaluation.get(None, {}))
    out.update(protocol.evaluation.get(backbone_family(backbone), {}))
    return out


def apply_evaluation(strategy, protocol: Protocol, backbone: str) -> None:
    """Set the protocol's evaluation settings (upscaling, IoU loss) on ``strategy``."""
    strategy.configure_evaluation(**evaluation_settings(protocol, backbone))


def stream_config(cfg):
    """The StreamConfig of a run config: the stream, the protocol's stream items, then the run
    config's ``stream_overrides`` (which win)."""
    from scenarios.config import load_stream_config

    overrides = dict(load_protocol(cfg.protocol).stream)
    overrides.update(cfg.stream_overrides)
    return load_stream_config(cfg.stream, overrides)
