"""``throughput``: images per second of training and evaluation, from run records."""
from __future__ import annotations

HELP = "images per second of training and evaluation, per run, from run records"


def add_arguments(p) -> None:
    p.add_argument("results", nargs="+", help="folders of run records")
    p.add_argument("--markdown", action="store_true", help="a Markdown table instead of plain text")


def main(args) -> int:
    from benchmark.reporting.throughput import render, rows_of

    rows = rows_of(args.results)
    if not rows:
        raise FileNotFoundError(f"no run records with image counts in {', '.join(args.results)}")
    print(render(rows, markdown=args.markdown))
    return 0
