"""Command line: ``python run_benchmark.py [run|grid|report|cache|points|list] ...``.

Heavy imports (torch, Avalanche) happen inside the commands so that ``--help`` answers at once.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List, Optional

COMMANDS = ("run", "grid", "report", "cache", "points", "list")


def _overrides(pairs: List[str]) -> Dict[str, object]:
    from benchmark.config import ConfigError, parse_value

    out: Dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = parse_value(value)
    return out


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="run config YAML (default: benchmark/configs/default.yaml)")
    p.add_argument("--methods", help="comma-separated method names, or 'all'")
    p.add_argument("--seeds", help="comma-separated integer seeds (default 1234)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--output", help="folder for run records (default results/)")
    p.add_argument("--stream", help="built-in stream name (synthetic, paper) or stream YAML path")
    p.add_argument("--backbone", help="sam_small, sam_vit_b, sam2.1_hiera_t, ...")
    p.add_argument("--checkpoint", help="auto, none or a path to the backbone's weights")
    p.add_argument("--method-file", action="append", default=[],
                   help="a .py file or module that registers extra methods (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, dotted (e.g. hparams.epochs=3, "
                        "method_hparams.lora.rank=4, stream_overrides.image_size=128)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--deterministic", action="store_true",
                   help="torch.use_deterministic_algorithms (see docs/scaling.md for GPU caveats)")
    p.add_argument("--no-resume", action="store_true",
                   help="ignore the saved state of an interrupted run and start it afresh")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_benchmark.py",
        description="Continual-learning benchmark of Segment Anything models. With no command, "
                    "runs the built-in default benchmark and prints the leaderboard.")
    sub = parser.add_subparsers(dest="command", metavar="{run,grid,report,cache,points,list}")

    p_run = sub.add_parser("run", help="run a benchmark (the default command)")
    _add_run_options(p_run)
    p_run.add_argument("--no-report", action="store_true", help="do not print the leaderboard")

    p_grid = sub.add_parser("grid", help="a grid of runs (methods x seeds x orders x backbones), "
                                         "sharded, skipping runs already recorded")
    p_grid.add_argument("--config", required=True, help="grid YAML (see docs/scaling.md)")
    p_grid.add_argument("--shard", default=None, metavar="I/N",
                        help="run only runs k with k %% N == I (e.g. a SLURM array task)")
    p_grid.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    p_grid.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a run config field for every run")
    p_grid.add_argument("--no-progress", action="store_true")
    p_grid.add_argument("--slurm", action="store_true",
                        help="submit the grid as a SLURM job array with submitit (pip install submitit)")
    p_grid.add_argument("--slurm-jobs", type=int, default=None,
                        help="array size (default: the number of runs to do)")
    p_grid.add_argument("--slurm-partition", default=None)
    p_grid.add_argument("--slurm-time", type=int, default=24 * 60, help="minutes per job")
    p_grid.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per job")
    p_grid.add_argument("--slurm-cpus", type=int, default=8, help="CPUs per job")
    p_grid.add_argument("--slurm-parallel", type=int, default=None, help="array tasks at once")
    p_grid.add_argument("--slurm-folder", default="slurm_logs/%j", help="submitit log folder")

    p_rep = sub.add_parser("report", help="leaderboard tables and heatmaps from run records")
    p_rep.add_argument("--results", nargs="+", default=["results"], help="record files or folders")
    p_rep.add_argument("--out", default=None, help="folder for tables (default <first results>/tables)")
    p_rep.add_argument("--no-heatmaps", action="store_true")

    p_cache = sub.add_parser("cache", help="precompute the feature cache of a config's stream")
    _add_run_options(p_cache)
    p_cache.add_argument("--taps", default=None,
                         help="comma-separated taps (default: the taps the config's methods use)")
    p_cache.add_argument("--clear", action="store_true", help="delete every cache entry and exit")

    p_pts = sub.add_parser("points", help="write masks/points.json for a folder-format split")
    p_pts.add_argument("folder", help="a split folder holding images/ and masks/ "
                                      "(e.g. data/Kvasir/train)")
    p_pts.add_argument("--num-points", type=int, default=3)
    p_pts.add_argument("--seed", type=int, default=1234)
    p_pts.add_argument("--mask-reading", choices=("threshold", "reference"), default="threshold")
    p_pts.add_argument("--overwrite", action="store_true")

    sub.add_parser("list", help="list methods, backbones and built-in streams")
    return parser


def _run_config(args):
    from benchmark.config import load_run_config

    overrides = _overrides(args.set)
    for name in ("methods", "device", "output", "stream", "backbone", "checkpoint"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if args.seeds:
        try:
            overrides["seeds"] = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise SystemExit(f"error: --seeds expects comma-separated integers, got {args.seeds!r}")
    if args.no_progress:
        overrides["progress"] = False
    if getattr(args, "deterministic", False):
        overrides["deterministic"] = True
    if getattr(args, "no_resume", False):
        overrides["resume"] = False
    cfg = load_run_config(args.config, overrides)
    cfg.method_modules = list(cfg.method_modules) + list(args.method_file)
    return cfg


def cmd_run(args) -> int:
    from benchmark.leaderboard import render_terminal
    from benchmark.records import load_records
    from benchmark.runner import run_benchmark

    cfg = _run_config(args)
    started = time.perf_counter()
    print(f"benchmark: stream={cfg.stream} backbone={cfg.backbone} methods={cfg.methods} "
          f"seeds={cfg.seeds} -> {cfg.output}/", flush=True)
    paths = run_benchmark(cfg)
    elapsed = time.perf_counter() - started
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 reports
        return 0
    if not getattr(args, "no_report", False):
        print()
        print(render_terminal(load_records(paths)))
    print(f"\n{len(paths)} run(s) in {elapsed:.1f} s; records in {cfg.output}/ "
          f"(tables: python run_benchmark.py report --results {cfg.output})")
    return 0


def cmd_grid(args) -> int:
    from benchmark.grid import load_grid, parse_shard, resolve, run_grid, submit_slurm

    grid = load_grid(args.config, _overrides(args.set))
    if args.no_progress:
        grid.overrides["progress"] = False
    shard = parse_shard(args.shard)
    if args.slurm:
        todo = sum(not r.done for r in resolve(grid))
        jobs = args.slurm_jobs or max(todo, 1)
        slurm = {"timeout_min": args.slurm_time, "gpus_per_node": args.slurm_gpus,
                 "cpus_per_task": args.slurm_cpus, "slurm_partition": args.slurm_partition,
                 "slurm_array_parallelism": args.slurm_parallel}
        submitted = submit_slurm(args.config, args.set, jobs, args.slurm_folder, slurm)
        print(f"submitted {len(submitted)} SLURM job(s) for {todo} run(s) to do: "
              f"{', '.join(str(j.job_id) for j in submitted[:5])}{' ...' if len(submitted) > 5 else ''}")
        return 0
    run_grid(grid, shard, dry_run=args.dry_run, progress=not args.no_progress)
    return 0


def cmd_report(args) -> int:
    from benchmark.leaderboard import report_main

    out = args.out or f"{args.results[0].rstrip('/')}/tables"
    return report_main(args.results, out, heatmaps=not args.no_heatmaps)


def cmd_cache(args) -> int:
    from benchmark.feature_cache import FeatureCache
    from benchmark.runner import prepare, resolve_methods

    cfg = _run_config(args)
    if args.clear:
        removed = FeatureCache(cfg.cache_dir).clear()
        print(f"removed {removed} cache entr{'y' if removed == 1 else 'ies'} from {cfg.cache_dir}")
        return 0
    if args.taps:
        taps = [t.strip() for t in args.taps.split(",") if t.strip()]
    else:
        from methods.registry import get_method
        taps = sorted({get_method(m).tap_for(cfg.backbone) for m in resolve_methods(cfg)})
    ctx = prepare(cfg)
    for tap in taps:
        if tap not in ctx.backbone.taps:
            raise SystemExit(f"error: backbone {cfg.backbone} has no tap {tap!r} "
                             f"(taps: {', '.join(ctx.backbone.taps)})")
        ctx.views_at(tap)
        print(f"cached tap {tap} for {len(ctx.stream.domain_names)} domains in {cfg.cache_dir}/")
    return 0


def cmd_points(args) -> int:
    from scenarios.points import write_points_json

    path = write_points_json(args.folder, num_points=args.num_points, seed=args.seed,
                             mask_reading=args.mask_reading, overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0


def cmd_list(args) -> int:
    from benchmark.backbones import list_backbones
    from methods.registry import get_method, list_methods
    from scenarios.config import available_streams

    print("methods:")
    for name in list_methods():
        cls = get_method(name)
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip()
        doc = doc.splitlines()[0] if doc else ""  # a class without a docstring: its module's
        print(f"  {name:<18s} tap={cls.tap:<8s} {doc}")
    print("backbones:\n  " + "\n  ".join(list_backbones()))
    print("built-in streams:\n  " + "\n  ".join(available_streams()))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["run"] + argv
    args = build_parser().parse_args(argv)
    handlers = {"run": cmd_run, "grid": cmd_grid, "report": cmd_report, "cache": cmd_cache, "points": cmd_points,
                "list": cmd_list}
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:  # a run diverged; finished domains stay resumable
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
