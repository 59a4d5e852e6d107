"""``report``: leaderboard tables and heatmaps from run records."""
from __future__ import annotations

HELP = "leaderboard tables and heatmaps from run records"


def add_arguments(p) -> None:
    p.add_argument("--results", nargs="+", default=["results"], help="record files or folders")
    p.add_argument("--out", default=None, help="folder for tables (default <first results>/tables)")
    p.add_argument("--no-heatmaps", action="store_true")
    p.add_argument("--group-by", action="append", default=[], metavar="KEY",
                   help="split rows by a key's value, shown as a column (repeatable): backbone, "
                        "stream, order, seed, protocol, hparams.lr, weights, ... (dotted keys "
                        "into the record's fields, fingerprint parts or hyper-parameters)")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="only records whose KEY has VALUE (repeatable; keys as --group-by)")
    p.add_argument("--split-orders", action="store_true",
                   help="one row per domain order instead of mean ± std over orders")


def main(args) -> int:
    from benchmark.reporting.leaderboard import report_main
    from benchmark.reporting.pooling import Pooling

    out = args.out or f"{args.results[0].rstrip('/')}/tables"
    pooling = Pooling(pool_orders=not args.split_orders, group_by=tuple(args.group_by))
    return report_main(args.results, out, heatmaps=not args.no_heatmaps, pooling=pooling,
                       where=args.where)
