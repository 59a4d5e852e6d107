"""Re-evaluate a saved model (``run_benchmark.py evaluate --from``): the run it came from, rebuilt
from its ``model.json`` and ``stream.yaml``, with the saved state loaded, scores every domain once.

On the same machine with the same code this reproduces the saved R row exactly: the strategy is
built as the run built it (same hyper-parameters, protocol, precision, feature tap and cache) and
loaded through the same ``load_state_dict`` that resuming uses. ``data_root`` moves the data:
folder domains are read from ``<data_root>/<name of their saved root folder>``, a synthetic
stream from (or generated into) ``<data_root>``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from benchmark.core.registry import load_module
from benchmark.engine.config import RunConfig, load_run_config
from benchmark.engine.context import prepare
from benchmark.engine.run import Run
from benchmark.engine.saved_models import STREAM, load_model

#: run-config fields that say where things live or how a run is shown, not what it computes
_LOCAL = ("cache_dir", "checkpoint", "device", "output", "progress", "num_workers")


def _rebase(stream_config: Dict[str, Any], data_root: str) -> Dict[str, Any]:
    """Stream overrides that read the saved stream's data from ``data_root``."""
    out: Dict[str, Any] = {}
    for key in ("domains", "eval_only"):
        specs = [dict(d) for d in stream_config.get(key) or []]
        for spec in specs:
            if spec.get("root"):
                spec["root"] = str(Path(data_root) / Path(spec["root"]).name)
        out[key] = specs
    if stream_config.get("synthetic"):
        out["synthetic"] = {"cache_dir": str(data_root)}
    return out


def saved_config(folder: Path, meta: Dict[str, Any], data_root: Optional[str] = None,
                 **local: Any) -> RunConfig:
    """The run config of a saved model: its run's, for its method and seed only, on the saved
    stream (``stream.yaml``), never resuming or saving; ``local`` replaces fields of ``_LOCAL``."""
    import yaml

    data = {k: v for k, v in meta["config"].items() if k not in ("source", "overridden")}
    unknown = sorted(set(local) - set(_LOCAL))
    if unknown:
        raise ValueError(f"cannot override {', '.join(unknown)} of a saved model's run")
    data.update({k: v for k, v in local.items() if v is not None})
    overrides: Dict[str, Any] = {}
    if data_root is not None:
        overrides = _rebase(yaml.safe_load((folder / STREAM).read_text()), data_root)
    data.update(stream=str(folder / STREAM), stream_overrides=overrides, methods=[meta["method"]],
                seeds=[int(meta["seed"])], resume=False, save_models=False, tensorboard=None)
    return load_run_config(None, data)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def same_row(a: Dict[str, list], b: Dict[str, list]) -> bool:
    """Whether two R rows are equal, value for value (NaN equal to NaN)."""
    def key(row):
        return {m: [repr(float(v)) for v in values] for m, values in row.items()}
    return key(a) == key(b)


def evaluate_saved(folder: str | Path, data_root: Optional[str] = None, **local: Any) -> Dict[str, Any]:
    """Score every domain with the saved model in ``folder``: ``{"row": {metric: [per domain]},
    "saved_row": the run's, "equal": bool, "run_id", "saved_run_id", "meta"}``."""
    folder = Path(folder)
    meta, state = load_model(folder)
    cfg = saved_config(folder, meta, data_root, **local)
    for module in cfg.method_modules:
        load_module(module)
    ctx = prepare(cfg)
    run = Run(ctx, cfg, meta["method"], int(meta["seed"]))
    if _plain(run.resolved.hparams) != _plain(meta["hparams"]):
        raise ValueError(f"{folder}: {meta['method']}'s hyper-parameters resolve differently with "
                         f"this code than when the model was saved; saved: {meta['hparams']}")
    run.views = ctx.views_at(run.resolved.tap)
    run.build_strategy()
    run.strategy.load_state_dict(state)
    run.evaluate_row()
    row = run.rows[-1]
    return {"row": row, "saved_row": meta["row"], "equal": same_row(row, meta["row"]),
            "run_id": run.run_id, "saved_run_id": meta["run_id"], "meta": meta}
