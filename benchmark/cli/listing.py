"""``list``: methods, backbones and built-in streams; ``list --hparams METHOD``: every resolved
hyper-parameter of a method with where its value came from."""
from __future__ import annotations

from benchmark.cli.options import add_run_options, run_config

HELP = "list methods, backbones and built-in streams (--hparams METHOD: its resolved settings)"


def add_arguments(p) -> None:
    p.add_argument("--hparams", metavar="METHOD", default=None,
                   help="print METHOD's resolved hyper-parameters and where each came from "
                        "(default, preset, run config, --set) for the run options given")
    add_run_options(p)


def main(args) -> int:
    if args.hparams:
        return print_hparams(args)
    from benchmark.backbones import list_backbones
    from benchmark.core.registry import list_methods, load_module, method_summary
    from scenarios.config import available_streams

    for module in args.method_file:
        load_module(module)
    print("methods:")
    for name in list_methods():
        tap, doc = method_summary(name)  # a class without a docstring: its module's
        print(f"  {name:<18s} tap={tap:<8s} {doc}")
    print("backbones:\n  " + "\n  ".join(list_backbones()))
    print("built-in streams:\n  " + "\n  ".join(available_streams()))
    return 0


def print_hparams(args) -> int:
    from tabulate import tabulate

    from benchmark.engine.resolve import resolve
    from benchmark.engine.run import resolve_methods
    from benchmark.engine.protocol import stream_config

    cfg = run_config(args)
    resolve_methods(cfg)  # imports --method-file modules
    stream_cfg = stream_config(cfg)
    r = resolve(cfg, stream_cfg, args.hparams, cfg.seeds[0])
    rows = [(k, repr(v), r.sources[k]) for k, v in sorted(r.hparams.items())]
    rows.append(("(tap)", r.tap, f"{r.cls.__name__}.tap_for({cfg.backbone!r})"))
    print(f"{args.hparams} on stream {stream_cfg.name!r} with backbone {cfg.backbone!r} "
          f"(protocol {cfg.protocol}, run config {cfg.source}):")
    print(tabulate(rows, headers=("hyper-parameter", "value", "from"), tablefmt="simple"))
    return 0
