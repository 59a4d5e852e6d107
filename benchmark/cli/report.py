"""``report``: leaderboard tables and heatmaps from run records (``--html``: one page of it all)."""
from __future__ import annotations

HELP = "leaderboard tables and heatmaps from run records"


def add_arguments(p) -> None:
    p.add_argument("--results", nargs="+", default=["results"], help="record files or folders")
    p.add_argument("--out", default=None, help="folder for tables (default <first results>/tables)")
    p.add_argument("--no-heatmaps", action="store_true")
    p.add_argument("--html", nargs="?", const="", default=None, metavar="OUT",
                   help="also write one self-contained HTML page (sortable leaderboard, "
                        "per-domain tables, plots, provenance, diff view) to OUT "
                        "(default <out>/report.html)")


def main(args) -> int:
    from benchmark.reporting.leaderboard import report_main

    out = args.out or f"{args.results[0].rstrip('/')}/tables"
    code = report_main(args.results, out, heatmaps=not args.no_heatmaps)
    if code == 0 and args.html is not None:
        from benchmark.reporting.html import html_main

        code = html_main(args.results, args.html or f"{out}/report.html")
    return code
