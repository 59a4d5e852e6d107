"""Which records a leaderboard row pools, what tells rows apart, and the report's filters.

A row pools records that are repeats: equal in everything but the seed and (by default) the
domain order.

* A record with a ``fingerprint`` is compared on every part of it except ``seed``; in the
  ``stream`` part the training order (``order``, ``order_seed``, the order of ``domains``) is
  left out (unless orders are split), and so are file locations that change no number
  (``source``, ``synthetic.cache_dir``).
* A record without one (made before fingerprints existed) is compared, as far as it can be, on
  its method, backbone, stream name, set of domains, hyper-parameters and the run-config settings
  in ``CONFIG_KEYS`` (the checkpoint, stream overrides, protocol, ...).

Rows of one (method, backbone, stream) that differ in something else are labelled by what
differs (``lora [rank=4]``, ``finetune_decoder [stream.synthetic.train_per_domain=4]``,
``samcl [weights.sha256 3f2a1b2c…]``). Records of one identity (the whole fingerprint, seed and
order included; without a fingerprint, the run id) count once; when they disagree in their scores
the row is flagged (``†``) and a note names the run and what disagrees.
"""
from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from benchmark.reporting.records import RunRecord, tagged_name

ORDER_KEYS = ("order", "order_seed")                 # stream keys that only say the order
ORDER_OVERRIDES = ("order_seed", "domains", "orders")  # stream overrides that choose an order
CONFIG_KEYS = ("checkpoint", "stream_overrides", "protocol", "cache_dtype", "channels_last",
               "deterministic")
FLAG = "†"
MISSING = object()
_HASH = re.compile(r"[0-9a-fA-F]{16,}")
_MAX_TAGS = 4


class ReportError(ValueError):
    """A bad --group-by / --where option of ``report``."""


@dataclass(frozen=True)
class Pooling:
    """How rows are formed. ``pool_orders``: records that differ only in the domain order share a
    row (their count is the ``Orders`` column); ``group_by``: keys whose values split rows and
    are shown as columns (``lookup`` says how a key is read)."""
    pool_orders: bool = True
    group_by: Tuple[str, ...] = ()


@dataclass
class Pooled:
    """Records (one per identity) with the row each belongs to."""
    records: List[RunRecord]
    labels: List[str]                  # the method's name in the table, with what tells it apart
    groups: List[int]                  # row number of each record
    by: Dict[str, List[str]]           # group-by key -> displayed value per record
    flagged: List[bool]                # whether the record's identity had disagreeing records
    notes: List[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Keys: reading a dotted key from a record
# --------------------------------------------------------------------------------------------

def training_order(record: RunRecord) -> List[str]:
    """The trained domains in training order: the fingerprint's ``stream.order`` when present,
    else the record's column order (trained domains come first, in stream order)."""
    stream = record.fingerprint.get("stream") if record.fingerprint else None
    if isinstance(stream, dict) and isinstance(stream.get("order"), list):
        return [str(d) for d in stream["order"]]
    return record.domains[:record.trained]


ALIASES: Dict[str, Callable[[RunRecord], Any]] = {
    "method": lambda r: r.method,
    "backbone": lambda r: r.backbone,
    "stream": lambda r: r.stream_name,
    "seed": lambda r: r.seed,
    "order": training_order,
    "protocol": lambda r: (r.config or {}).get("protocol") or "project",
    "precision": lambda r: (r.config or {}).get("precision") or "fp32",
}
_SKIPPED_FIELDS = ("matrices", "zero_shot", "columns")


def _spaces(record: RunRecord) -> List[dict]:
    """Where a dotted key is looked up, first match wins: the record's fields, its fingerprint
    parts, its hyper-parameters (so ``lr`` reads ``hparams.lr``)."""
    fields_ = {f.name: getattr(record, f.name) for f in fields(record)
               if f.name not in _SKIPPED_FIELDS}
    return [fields_, record.fingerprint or {}, record.hparams or {}]


def _dig(obj: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        if not isinstance(obj, dict) or part not in obj:
            return MISSING
        obj = obj[part]
    return obj


def lookup(record: RunRecord, key: str) -> Any:
    """The value of a dotted ``key`` in ``record`` (``MISSING`` if it has none): an alias
    (method, backbone, stream = its name, seed, order, protocol, precision), else a dotted path
    into the record's fields (``hparams.lr``, ``config.checkpoint``, ``stream.trained``), its
    fingerprint parts (``weights``, ``stream.order``) or its hyper-parameters (``lr``)."""
    if key in ALIASES:
        return ALIASES[key](record)
    parts = key.split(".")
    for space in _spaces(record):
        value = _dig(space, parts)
        if value is not MISSING:
            return value
    return MISSING


def _paths(obj: Any, prefix: str = "") -> List[str]:
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            name = f"{prefix}{k}"
            out.append(name)
            out += _paths(v, f"{name}.")
    return out


def known_keys(records: Sequence[RunRecord]) -> List[str]:
    names = set(ALIASES)
    for r in records:
        for space in _spaces(r):
            names.update(_paths(space))
    return sorted(names)


def check_key(records: Sequence[RunRecord], key: str, option: str) -> None:
    """A ReportError naming the closest known keys unless some record has ``key``."""
    if any(lookup(r, key) is not MISSING for r in records):
        return
    known = known_keys(records)
    close = difflib.get_close_matches(key, known, n=4, cutoff=0.5)
    hint = (f"did you mean {', '.join(close)}?" if close else
            f"known keys include {', '.join(sorted(ALIASES))}, hparams.<name>, config.<name>, "
            f"stream.<name>, extra.<name> and the fingerprint's parts")
    raise ReportError(f"{option} {key!r}: no record has this key; {hint}")


def show(value: Any, key: str = "") -> str:
    """A value as the tables show it (an order as ``a→b→c``)."""
    if value is MISSING or value is None:
        return "–"
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return ("→" if key in ("order", "stream.order") else ",").join(map(str, value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def matches(value: Any, text: str) -> bool:
    """Whether a record's ``value`` equals the ``--where`` text (numbers compared as numbers,
    lists as comma- or arrow-separated items)."""
    if value is MISSING:
        return False
    if isinstance(value, list):
        return [str(v) for v in value] == [t.strip() for t in re.split(r"[,→]", text)]
    if isinstance(value, bool) or value is None:
        return str(value).lower() == text.strip().lower() or (value is None and text in ("null", "~"))
    if isinstance(value, (int, float)):
        try:
            return math.isclose(float(value), float(text), rel_tol=1e-12, abs_tol=0.0)
        except ValueError:
            return False
    return str(value) == text or show(value) == text


def apply_where(records: Sequence[RunRecord], conditions: Sequence[str]) -> List[RunRecord]:
    """The records matching every ``KEY=VALUE`` condition; a ReportError for a malformed
    condition, an unknown key or a value no record has (naming the values there are)."""
    out = list(records)
    for cond in conditions:
        if "=" not in cond:
            raise ReportError(f"--where expects KEY=VALUE, got {cond!r}")
        key, text = (s.strip() for s in cond.split("=", 1))
        check_key(out, key, "--where")
        kept = [r for r in out if matches(lookup(r, key), text)]
        if not kept:
            values = sorted({show(lookup(r, key), key) for r in out})
            raise ReportError(f"--where {key}={text}: no record matches (values: "
                              f"{', '.join(values[:8])}{', ...' if len(values) > 8 else ''})")
        out = kept
    return out


# --------------------------------------------------------------------------------------------
# Identity: one record per run, disagreeing duplicates flagged
# --------------------------------------------------------------------------------------------

def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def identity(record: RunRecord) -> Optional[str]:
    """What makes two records the same run: the method with the whole fingerprint (seed and order
    included); without a fingerprint, the run id; None if the record has neither."""
    if record.fingerprint:
        return _canonical(["fingerprint", record.method, record.fingerprint])
    rid = record.extra.get("run_id")
    return None if rid is None else _canonical(["run_id", rid])


def _column_values(record: RunRecord) -> Dict[str, Any]:
    return {c.get("key"): record.extra.get(c.get("key")) for c in record.columns}


def disagreement(a: RunRecord, b: RunRecord) -> Optional[str]:
    """What differs between the scores of two records of one run (None if nothing)."""
    diffs = []
    for score in sorted(set(a.matrices) | set(b.matrices)):
        if score not in a.matrices or score not in b.matrices:
            diffs.append(f"{score} present in one only")
            continue
        x, y = a.matrix(score), b.matrix(score)
        if x.shape != y.shape:
            diffs.append(f"{score} shape {x.shape} vs {y.shape}")
        elif not np.array_equal(x, y, equal_nan=True):
            delta = np.abs(x - y)
            n = int(np.sum(~((x == y) | (np.isnan(x) & np.isnan(y)))))
            diffs.append(f"{score} in {n} of {x.size} cells (max |Δ| {np.nanmax(delta):.4g})")
    ca, cb = _column_values(a), _column_values(b)
    for key in sorted(set(ca) | set(cb), key=str):
        if _canonical(ca.get(key)) != _canonical(cb.get(key)):
            diffs.append(f"{key} {show(ca.get(key))} vs {show(cb.get(key))}")
    return "; ".join(diffs) or None


def unique_records(records: Sequence[RunRecord]) -> Tuple[List[RunRecord], Dict[int, str]]:
    """One record per identity (the latest ``created`` kept), and for each kept record whose
    identity had records with other scores, what disagrees (key: its index in the list)."""
    by_id: Dict[str, List[RunRecord]] = {}
    out: List[RunRecord] = []
    for rec in records:
        key = identity(rec)
        if key is None:
            out.append(rec)
        else:
            by_id.setdefault(key, []).append(rec)
    problems: Dict[int, str] = {}
    for same in by_id.values():
        kept = max(same, key=lambda r: r.created)
        found = [d for d in (disagreement(kept, r) for r in same if r is not kept) if d]
        if found:
            problems[len(out)] = (f"{len(same)} records disagree: {found[0]}; the row uses the "
                                  f"latest (created {kept.created or 'unknown'})")
        out.append(kept)
    return out, problems


# --------------------------------------------------------------------------------------------
# Rows: pool keys and labels
# --------------------------------------------------------------------------------------------

def _without_paths(stream: dict) -> dict:
    """A stream part or stream overrides without the file locations that do not change numbers
    (``source``: the YAML's path, ``synthetic.cache_dir``: where generated images are kept)."""
    out = {k: v for k, v in stream.items() if k != "source"}
    if isinstance(out.get("synthetic"), dict):
        out["synthetic"] = {k: v for k, v in out["synthetic"].items() if k != "cache_dir"}
        if not out["synthetic"]:
            del out["synthetic"]
    return out


def _order_free_stream(part: Any) -> Any:
    if not isinstance(part, dict):
        return part
    out = {k: v for k, v in _without_paths(part).items() if k not in ORDER_KEYS}
    if isinstance(out.get("domains"), list):
        out["domains"] = sorted(out["domains"], key=_canonical)
    return out


def pool_key(record: RunRecord, pooling: Pooling) -> dict:
    """What must be equal for two records (of one method, backbone, stream) to share a row."""
    if record.fingerprint:
        key = {k: v for k, v in record.fingerprint.items() if k != "seed"}
        if "stream" in key:
            key["stream"] = _order_free_stream(key["stream"])
    else:
        config = record.config or {}
        key = {"hparams": record.hparams or {},
               "domains": sorted(record.domains[:record.trained]) + record.domains[record.trained:]}
        for name in CONFIG_KEYS:
            value = config.get(name)
            if isinstance(value, dict):  # stream_overrides
                value = {k: v for k, v in _without_paths(value).items()
                         if k not in ORDER_OVERRIDES}
            if value not in (None, {}):
                key[name] = value
    if not pooling.pool_orders:
        key["order"] = training_order(record)
    if pooling.group_by:
        key["by"] = {k: show(lookup(record, k), k) for k in pooling.group_by}
    return key


def _leaves(obj: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(obj, dict) and obj:
        out = {}
        for k, v in obj.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def _tag(leaf: str, value: Any) -> str:
    name = leaf[len("hparams."):] if leaf.startswith("hparams.") else leaf
    if isinstance(value, str) and _HASH.fullmatch(value):
        return f"{name} {value[:8]}…"
    text = show(value, leaf)
    return f"{name}={text[:40]}{'…' if len(text) > 40 else ''}"


def _differing(keys: List[dict], hidden: Sequence[str]) -> List[str]:
    flat = [_leaves(k) for k in keys]
    names = sorted({n for f in flat for n in f})
    return [n for n in names
            if len({_canonical(f.get(n, "<absent>")) for f in flat}) > 1
            and n.split(".")[0] != "by" and n not in hidden]


def _tags_for(members: List[int], keys: List[dict], pooling: Pooling) -> Dict[int, List[str]]:
    """The tags of one (method, backbone, stream) display group's records: the values of what
    differs between the group's pool keys (not the group-by keys: they are columns)."""
    hidden = list(pooling.group_by) + [f"hparams.{k}" for k in pooling.group_by]
    differing = _differing([keys[i] for i in members], hidden)
    out = {}
    for i in members:
        leaves = _leaves(keys[i])
        tags = [_tag(n, leaves.get(n, MISSING)) for n in differing]
        if len(tags) > _MAX_TAGS:
            tags = tags[:_MAX_TAGS] + [f"+{len(tags) - _MAX_TAGS} more"]
        out[i] = tags
    return out


def _labels(recs: List[RunRecord], keys: List[dict], pooling: Pooling) -> List[str]:
    """Each record's row label: the method, its precision tag and what tells its row apart from
    the other rows of its (method, backbone, stream); records with and without a fingerprint
    are labelled within their own kind (the latter tagged ``no fingerprint``)."""
    display: Dict[tuple, List[int]] = {}
    for i, r in enumerate(recs):
        display.setdefault((r.method_label, r.backbone, r.stream_name), []).append(i)
    tags: Dict[int, List[str]] = {}
    for members in display.values():
        with_fp = [i for i in members if recs[i].fingerprint]
        without = [i for i in members if not recs[i].fingerprint]
        for subset in (with_fp, without):
            tags.update(_tags_for(subset, keys, pooling) if subset else {})
        if with_fp and without:
            for i in without:
                tags[i].append("no fingerprint")
    return [tagged_name(r.method, r.precision_tags + tags[i]) for i, r in enumerate(recs)]


def pool(records: Sequence[RunRecord], pooling: Pooling = Pooling()) -> Pooled:
    """One record per identity, each with its row (``groups``) and row label."""
    recs, problems = unique_records(records)
    keys = [pool_key(r, pooling) for r in recs]
    labels = _labels(recs, keys, pooling)
    rows: Dict[str, int] = {}
    groups = [rows.setdefault(_canonical([r.method_label, r.backbone, r.stream_name, keys[i]]),
                              len(rows)) for i, r in enumerate(recs)]
    by = {k: [show(lookup(r, k), k) for r in recs] for k in pooling.group_by}
    flagged = [i in problems for i in range(len(recs))]
    notes = [f"{FLAG} {labels[i]} / {recs[i].backbone} / {recs[i].stream_name}, seed "
             f"{recs[i].seed}, run {recs[i].extra.get('run_id') or '(no run id)'}: {text}"
             for i, text in sorted(problems.items())]
    return Pooled(recs, labels, groups, by, flagged, notes)
