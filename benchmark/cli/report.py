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
    code = report_main(args.results, out, heatmaps=not args.no_heatmaps)
    if code == 0:
        _extra_tables(args.results, out)
    return code


def _extra_tables(results, out: str) -> None:
    """per_domain_<metric> tables of the domains' own metrics, and significance.{md,csv} when
    records carry per-image scores (``--log-samples`` runs)."""
    from pathlib import Path

    from benchmark.reporting.domain_tables import write_domain_metric_tables
    from benchmark.reporting.records import load_records
    from benchmark.reporting.significance import render_significance, significance_frame
    from scenarios.fileio import atomic_write_text

    records = load_records(results)
    for path in write_domain_metric_tables(records, out):
        print(f"  {path.stem}: {path}")
    frame = significance_frame(records)
    if frame.empty:
        return
    text = render_significance(frame)
    atomic_write_text(Path(out) / "significance.md", text)
    atomic_write_text(Path(out) / "significance.csv", frame.round(6).to_csv(index=False))
    print("\n" + text + f"  significance: {Path(out) / 'significance.md'}")
