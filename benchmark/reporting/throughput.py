"""Images per second of training and evaluation, from run records.

Training: training images x epochs over the seconds of ``learn_domain`` (summed over the domains;
it includes a method's work at domain boundaries, e.g. SAMCL's selector training). Evaluation:
images scored per row over the seconds of that row (summed over the rows). The feature cache is
built once per stream and is left out of both; its seconds are shown beside them.

    python run_benchmark.py throughput results/ [more/ ...] [--markdown]
"""
from __future__ import annotations

import sys

import pandas as pd

from benchmark.reporting.leaderboard import dedup_records
from benchmark.reporting.records import load_records


def rows_of(folders: list[str]) -> list[dict]:
    """One row per run (deduplicated across folders) that has image counts."""
    rows = []
    for record in dedup_records(load_records(folders)):  # a run in several folders counts once
        t = record.timing
        if "train_images" not in t:
            print(f"warning: skipping {record.method} seed {record.seed}: its record has no image "
                  "counts (written before timing.train_images existed)", file=sys.stderr)
            continue
        train_s, eval_s, trained = float(t["train_total"]), float(sum(t["eval"])), sum(t["train_images"])
        evaluated = len(t["eval"]) - (1 if record.extra.get("row0_shared") else 0)  # row 0 not timed
        rows.append({
            "method": record.method, "backbone": record.backbone, "device": record.device,
            "precision": record.config.get("precision", "fp32"),
            "channels_last": bool(record.config.get("channels_last", False)),
            # the attention path the encoder ran (records from before the option: not known)
            "attention": record.extra.get("attention", "-"),
            "world": int(record.extra.get("world_size", 1)),
            "workers": int(record.config.get("num_workers", 0)),
            "train img/s": trained / train_s if train_s > 0 and trained else float("nan"),  # NaN: no training
            "eval img/s": t["eval_images"] * evaluated / eval_s if eval_s > 0 else float("nan"),
            "train s": train_s, "eval s": eval_s, "cache s": float(t.get("cache_build", 0.0)),
        })
    return rows


def render(rows: list[dict], markdown: bool = False) -> str:
    """The rows as a table: rates to 3 significant digits (CPU rates are below 1), seconds to 0.1."""
    table = pd.DataFrame(rows).sort_values(["backbone", "method", "precision", "attention", "channels_last",
                                         "workers"])
    for column in ("train img/s", "eval img/s"):
        table[column] = table[column].map(lambda v: f"{v:.3g}")
    for column in ("train s", "eval s", "cache s"):
        table[column] = table[column].map(lambda v: f"{v:.1f}")
    return (table.to_markdown(index=False, disable_numparse=True) if markdown
            else table.to_string(index=False))
