"""Options shared by the commands that build a run config (run, cache, list --hparams)."""
from __future__ import annotations

import argparse
from typing import Dict, List

from scenarios.fileio import ConfigError, parse_value


def parse_overrides(pairs: List[str]) -> Dict[str, object]:
    """``["a.b=3", ...]`` -> ``{"a.b": 3}`` (values parsed as YAML)."""
    out: Dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = parse_value(value)
    return out


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="run config YAML (default: benchmark/configs/default.yaml)")
    p.add_argument("--methods", help="comma-separated method names, or 'all'")
    p.add_argument("--seeds", help="comma-separated integer seeds (default 1234)")
    p.add_argument("--orders", type=int, metavar="N",
                   help="N domain orders per method and seed: the stream's own, then seeded "
                        "shuffles (default: the stream's explicit orders, or its one order)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--output", help="folder for run records (default results/)")
    p.add_argument("--stream", help="built-in stream name (synthetic, paper) or stream YAML path")
    p.add_argument("--backbone", help="sam_small, sam_vit_b, sam2.1_hiera_t, ...")
    p.add_argument("--checkpoint", help="auto, none or a path to the backbone's weights")
    p.add_argument("--protocol", metavar="NAME",
                   help="project (default) or samcl_reference: a named set of settings that "
                        "reproduces another code base (benchmark/configs/protocols/, docs/protocol.md)")
    p.add_argument("--method-file", action="append", default=[],
                   help="a .py file or module that registers extra methods (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, dotted (e.g. hparams.epochs=3, "
                        "method_hparams.lora.rank=4, stream_overrides.image_size=128)")
    p.add_argument("--jobs", metavar="N", help="runs at once in worker processes: N or auto "
                   "(auto: one per CPU, 1 on a GPU; docs/scaling.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--log-samples", action="store_true",
                   help="per-image scores of every evaluation row, CSV beside each record")
    p.add_argument("--save-masks", type=int, metavar="N",
                   help="PNG masks of the first N test images per domain from the final row")
    p.add_argument("--wandb", metavar="PROJECT", help="log losses and R rows to Weights & Biases")
    p.add_argument("--csv-log", metavar="DIR", help="log losses and R rows as CSV files in DIR")
    p.add_argument("--deterministic", action="store_true",
                   help="torch.use_deterministic_algorithms (see docs/scaling.md for GPU caveats)")
    p.add_argument("--no-resume", action="store_true",
                   help="ignore the saved state of an interrupted run and start it afresh")


def run_config(args):
    """The RunConfig of the run options in ``args`` (a named option counts as a ``--set``)."""
    from benchmark.engine.config import load_run_config

    overrides = parse_overrides(args.set)
    for name in ("methods", "orders", "device", "output", "stream", "backbone", "checkpoint",
                 "protocol", "save_masks", "wandb", "csv_log", "save_models"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    jobs = getattr(args, "jobs", None)
    if jobs is not None:
        overrides["jobs"] = jobs if jobs == "auto" else parse_value(jobs)
    if args.seeds:
        try:
            overrides["seeds"] = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise ConfigError(f"--seeds expects comma-separated integers, got {args.seeds!r}") from None
    for flag, key, value in (("no_progress", "progress", False), ("deterministic", "deterministic", True),
                             ("no_resume", "resume", False), ("log_samples", "log_samples", True)):
        if getattr(args, flag, False):
            overrides[key] = value
    cfg = load_run_config(args.config, overrides)
    cfg.method_modules = list(cfg.method_modules) + list(args.method_file)
    return cfg
