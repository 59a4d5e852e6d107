"""``report``: leaderboard tables and heatmaps from run records."""
from __future__ import annotations

HELP = "leaderboard tables and heatmaps from run records"


def add_arguments(p) -> None:
    p.add_argument("--results", nargs="+", default=["results"], help="record files or folders")
    p.add_argument("--out", default=None, help="folder for tables (default <first results>/tables)")
    p.add_argument("--no-heatmaps", action="store_true")


def main(args) -> int:
    from benchmark.reporting.leaderboard import report_main

    out = args.out or f"{args.results[0].rstrip('/')}/tables"
    return report_main(args.results, out, heatmaps=not args.no_heatmaps)
