"""``report``: leaderboard tables and heatmaps from run records (``--html``: one page of it all)."""
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
    p.add_argument("--html", nargs="?", const="", default=None, metavar="OUT",
                   help="also write one self-contained HTML page (sortable leaderboard, "
                        "per-domain tables, plots, provenance, diff view) to OUT "
                        "(default <out>/report.html)")


def main(args) -> int:
    from benchmark.reporting.leaderboard import report_main
    from benchmark.reporting.pooling import Pooling

    out = args.out or f"{args.results[0].rstrip('/')}/tables"
    pooling = Pooling(pool_orders=not args.split_orders, group_by=tuple(args.group_by))
    code = report_main(args.results, out, heatmaps=not args.no_heatmaps, pooling=pooling,
                       where=args.where)
    if code == 0:
        _extra_tables(args.results, out, pooling, args.where)
    if code == 0 and args.html is not None:
        from benchmark.reporting.html import html_main

        code = html_main(args.results, args.html or f"{out}/report.html", where=args.where)
    return code


def _extra_tables(results, out: str, pooling, where) -> None:
    """per_domain_<metric> tables of the domains' own metrics, and significance.{md,csv} when
    records carry per-image scores (``--log-samples`` runs)."""
    from pathlib import Path

    from benchmark.reporting.domain_tables import write_domain_metric_tables
    from benchmark.reporting.leaderboard import select_records
    from benchmark.reporting.significance import render_significance, significance_frame
    from scenarios.fileio import atomic_write_text

    records = select_records(results, pooling, where)
    for path in write_domain_metric_tables(records, out, pooling):
        print(f"  {path.stem}: {path}")
    frame = significance_frame(records, pooling=pooling)
    if frame.empty:
        return
    text = render_significance(frame)
    atomic_write_text(Path(out) / "significance.md", text)
    atomic_write_text(Path(out) / "significance.csv", frame.round(6).to_csv(index=False))
    print("\n" + text + f"  significance: {Path(out) / 'significance.md'}")
