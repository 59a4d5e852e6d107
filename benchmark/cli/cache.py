"""``cache``: precompute the feature cache of a config's stream at the taps its methods use."""
from __future__ import annotations

from benchmark.cli.options import add_run_options, run_config

HELP = "precompute the feature cache of a config's stream"


def add_arguments(p) -> None:
    add_run_options(p)
    p.add_argument("--taps", default=None,
                   help="comma-separated taps (default: the taps the config's methods use)")
    p.add_argument("--clear", action="store_true", help="delete every cache entry and exit")
    p.add_argument("--verify", action="store_true",
                   help="hash every entry in full first: entries whose bytes changed since they were "
                        "built are removed, each reported in one line (and rebuilt below when "
                        "the config uses them)")


def main(args) -> int:
    from benchmark.engine.context import prepare
    from benchmark.engine.feature_cache import FeatureCache
    from benchmark.engine.resolve import resolve
    from benchmark.engine.run import resolve_methods
    from benchmark.engine.protocol import stream_config

    cfg = run_config(args)
    if args.clear:
        removed = FeatureCache(cfg.cache_dir).clear()
        print(f"removed {removed} cache entr{'y' if removed == 1 else 'ies'} from {cfg.cache_dir}")
        return 0
    if args.taps:
        taps = [t.strip() for t in args.taps.split(",") if t.strip()]
    else:
        stream_cfg = stream_config(cfg)
        taps = sorted({resolve(cfg, stream_cfg, m, cfg.seeds[0]).tap for m in resolve_methods(cfg)})
    damaged = FeatureCache(cfg.cache_dir).verify() if args.verify else []
    for message in damaged:
        print(f"{message}: removed")
    if args.verify:
        print(f"verified the feature cache in {cfg.cache_dir}: {len(damaged)} damaged entr"
              f"{'y' if len(damaged) == 1 else 'ies'}")
    ctx = prepare(cfg)
    for tap in taps:
        if tap not in ctx.backbone.taps:
            raise ValueError(f"backbone {cfg.backbone} has no tap {tap!r} "
                             f"(taps: {', '.join(ctx.backbone.taps)})")
    ctx.prepare_taps(taps)
    for tap in taps:
        print(f"cached tap {tap} for {len(ctx.stream.domain_names)} domains in {cfg.cache_dir}/")
    return 0
