"""``run`` (the default command): run a benchmark and print its leaderboard."""
from __future__ import annotations

import argparse
import os
import time

from benchmark.cli.options import add_run_options, run_config

HELP = "run a benchmark (the default command)"


def add_arguments(p) -> None:
    add_run_options(p)
    p.add_argument("--save-models", action=argparse.BooleanOptionalAction, default=None,
                   help="save each method's trained state after each domain into <output>/models/ "
                        "(default: the config's save_models, auto = for every backbone but sam_small)")
    p.add_argument("--no-report", action="store_true", help="do not print the leaderboard")


def main(args) -> int:
    from benchmark.engine.run import run_benchmark
    from benchmark.reporting.leaderboard import render_terminal
    from benchmark.reporting.records import load_records

    cfg = run_config(args)
    started = time.perf_counter()
    print(f"benchmark: stream={cfg.stream} backbone={cfg.backbone} methods={cfg.methods} "
          f"seeds={cfg.seeds}{f' orders={cfg.orders}' if cfg.orders else ''} -> {cfg.output}/",
          flush=True)
    paths = run_benchmark(cfg)
    elapsed = time.perf_counter() - started
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 reports (the group is gone)
        return 0
    if not args.no_report:
        print()
        print(render_terminal(load_records(paths)))
    print(f"\n{len(paths)} run(s) in {elapsed:.1f} s; records in {cfg.output}/ "
          f"(tables: python run_benchmark.py report --results {cfg.output})")
    return 0
