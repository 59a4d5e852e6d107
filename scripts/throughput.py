"""Images per second of training and evaluation, from run records.

Training: training images x epochs over the seconds of ``learn_domain`` (summed over the domains;
it includes a method's work at domain boundaries, e.g. SAMCL's selector training). Evaluation:
images scored per row over the seconds of that row (summed over the rows). The feature cache is
built once per stream and is left out of both; its seconds are shown beside them.

    .venv/bin/python scripts/throughput.py results/ [more/ ...] [--markdown]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rows_of(folders: list[str]) -> list[dict]:
    from benchmark.leaderboard import dedup_records
    from benchmark.records import load_records

    rows = []
    for record in dedup_records(load_records(folders)):  # a run in several folders counts once
        t = record.timing
        if "train_images" not in t:
            print(f"warning: skipping {record.method} seed {record.seed}: its record has no image "
                  "counts (written before timing.train_images existed)", file=sys.stderr)
            continue
        train_s, eval_s, trained = float(t["train_total"]), float(sum(t["eval"])), sum(t["train_images"])
        rows.append({
            "method": record.method, "backbone": record.backbone, "device": record.device,
            "precision": record.config.get("precision", "fp32"),
            "channels_last": bool(record.config.get("channels_last", False)),
            "world": int(record.extra.get("world_size", 1)),
            "workers": int(record.config.get("num_workers", 0)),
            "train img/s": trained / train_s if train_s > 0 and trained else float("nan"),  # NaN: no training
            "eval img/s": t["eval_images"] * len(t["eval"]) / eval_s if eval_s > 0 else float("nan"),
            "train s": train_s, "eval s": eval_s, "cache s": float(t.get("cache_build", 0.0)),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="folders of run records")
    ap.add_argument("--markdown", action="store_true", help="a Markdown table instead of plain text")
    args = ap.parse_args(argv)
    import pandas as pd

    try:
        rows = rows_of(args.results)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: no run records with image counts in {', '.join(args.results)}", file=sys.stderr)
        return 2
    table = pd.DataFrame(rows).sort_values(["backbone", "method", "precision", "channels_last", "workers"])
    for column in ("train img/s", "eval img/s"):  # 3 significant digits: CPU rates are below 1
        table[column] = table[column].map(lambda v: f"{v:.3g}")
    for column in ("train s", "eval s", "cache s"):
        table[column] = table[column].map(lambda v: f"{v:.1f}")
    print(table.to_markdown(index=False, disable_numparse=True) if args.markdown
          else table.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
