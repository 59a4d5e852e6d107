"""``grid``: methods x seeds x domain orders x backbones, sharded, skipping recorded runs."""
from __future__ import annotations

from benchmark.cli.options import parse_overrides

HELP = "a grid of runs (methods x seeds x orders x backbones), sharded, skipping runs already recorded"


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, help="grid YAML (see docs/scaling.md)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="run only runs k with k %% N == I (e.g. a SLURM array task)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run config field for every run")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--slurm", action="store_true",
                   help="submit the grid as a SLURM job array with submitit (pip install submitit)")
    p.add_argument("--slurm-jobs", type=int, default=None,
                   help="array size (default: the number of runs to do)")
    p.add_argument("--slurm-partition", default=None)
    p.add_argument("--slurm-time", type=int, default=24 * 60, help="minutes per job")
    p.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per job")
    p.add_argument("--slurm-cpus", type=int, default=8, help="CPUs per job")
    p.add_argument("--slurm-parallel", type=int, default=None, help="array tasks at once")
    p.add_argument("--slurm-folder", default="slurm_logs/%j", help="submitit log folder")


def main(args) -> int:
    from benchmark.engine.grid import load_grid, parse_shard, resolve_grid, run_grid

    grid = load_grid(args.config, parse_overrides(args.set))
    if args.no_progress:
        grid.overrides["progress"] = False
    shard = parse_shard(args.shard)
    if args.slurm:
        return submit(args, sum(not r.done for r in resolve_grid(grid)))
    run_grid(grid, shard, dry_run=args.dry_run, progress=not args.no_progress)
    return 0


def submit(args, todo: int) -> int:
    """Submit ``--slurm-jobs`` array tasks with submitit; task k runs ``grid --shard k/jobs``."""
    try:
        import submitit
    except ImportError:
        raise ValueError("--slurm needs the submitit package (pip install submitit)") from None
    jobs = args.slurm_jobs or max(todo, 1)
    slurm = {"timeout_min": args.slurm_time, "gpus_per_node": args.slurm_gpus,
             "cpus_per_task": args.slurm_cpus, "slurm_partition": args.slurm_partition,
             "slurm_array_parallelism": args.slurm_parallel}
    executor = submitit.AutoExecutor(folder=args.slurm_folder)
    executor.update_parameters(**{k: v for k, v in slurm.items() if v is not None})
    argv = [["grid", "--config", args.config, "--shard", f"{k}/{jobs}", "--no-progress"]
            + [a for s in args.set for a in ("--set", s)] for k in range(jobs)]
    submitted = executor.map_array(job_main, argv)
    print(f"submitted {len(submitted)} SLURM job(s) for {todo} run(s) to do: "
          f"{', '.join(str(j.job_id) for j in submitted[:5])}{' ...' if len(submitted) > 5 else ''}")
    return 0


def job_main(argv) -> int:
    """A picklable entry point for submitit jobs: the whole CLI with ``argv``."""
    from benchmark.cli import main as cli_main

    code = cli_main(argv)
    if code:
        raise RuntimeError(f"run_benchmark.py {' '.join(argv)} exited with {code}")
    return code
