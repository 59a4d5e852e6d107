"""Images per second of training and evaluation, from run records.

Training: training images x epochs over the seconds of ``learn_domain`` (summed over the domains;
it includes a method's work at domain boundaries, e.g. SAMCL's selector training). Evaluation:
images scored per row over the seconds of that row (summed over the rows). The feature cache is
built once per stream and is left out of both; its seconds are shown beside them, and so are the
seconds ``compile=true`` spent compiling (``timing.compile``), also left out of the rates.

``paper min`` is what one run of the paper protocol would take at these rates: its 7,070 training
images (Kvasir, CAMO, ISTD, ISIC, COD10K) x 20 epochs, plus 6 evaluations of its 3,495 test images
(row 0 and one per trained domain), cache build and compilation left out.

    python run_benchmark.py throughput results/ [more/ ...] [--markdown]
"""
from __future__ import annotations

import sys

import pandas as pd

from benchmark.reporting.leaderboard import dedup_records
from benchmark.reporting.records import load_records

#: the paper protocol's work per run: training images x epochs, and test images x rows
PAPER_TRAIN_IMAGES, PAPER_EPOCHS, PAPER_TEST_IMAGES, PAPER_ROWS = 7070, 20, 3495, 6


def paper_minutes(train_rate: float, eval_rate: float) -> float:
    """Minutes of one paper-protocol run at these images/s (NaN where a rate is not known)."""
    return (PAPER_TRAIN_IMAGES * PAPER_EPOCHS / train_rate + PAPER_TEST_IMAGES * PAPER_ROWS / eval_rate) / 60


def rows_of(folders: list[str]) -> list[dict]:
    """One row per run (deduplicated across folders) that has image counts."""
    rows = []
    for record in dedup_records(load_records(folders)):  # a run in several folders counts once
        if "train_images" not in record.timing:
            print(f"warning: skipping {record.method} seed {record.seed}: its record has no image "
                  "counts (written before timing.train_images existed)", file=sys.stderr)
            continue
        rows.append(_row(record))
    return rows


def _row(record) -> dict:
    t, config = record.timing, record.config
    compiled = t.get("compile", {})
    train_s = float(t["train_total"]) - float(compiled.get("train", 0.0))
    eval_s, trained = float(sum(t["eval"])) - float(compiled.get("eval", 0.0)), sum(t["train_images"])
    evaluated = len(t["eval"]) - (1 if record.extra.get("row0_shared") else 0)  # row 0 not timed
    train_rate = trained / train_s if train_s > 0 and trained else float("nan")  # NaN: no training
    eval_rate = t["eval_images"] * evaluated / eval_s if eval_s > 0 else float("nan")
    return {
        "method": record.method, "backbone": record.backbone, "device": record.device,
        "precision": config.get("precision", "fp32"),
        "channels_last": bool(config.get("channels_last", False)),
        # the attention path the encoder ran (records from before the option: not known)
        "attention": record.extra.get("attention", "-"),
        "cache": config.get("cache_dtype", "float32"), "compile": bool(config.get("compile", False)),
        "world": int(record.extra.get("world_size", 1)),
        "workers": int(config.get("num_workers", 0)), "prefetch": int(config.get("prefetch", 0)),
        "train img/s": train_rate, "eval img/s": eval_rate,
        "paper min": paper_minutes(train_rate, eval_rate) if trained else float("nan"),
        "train s": train_s, "eval s": eval_s, "cache s": float(t.get("cache_build", 0.0)),
        "compile s": float(compiled.get("train", 0.0)) + float(compiled.get("eval", 0.0)),
    }


def render(rows: list[dict], markdown: bool = False) -> str:
    """The rows as a table: rates to 3 significant digits (CPU rates are below 1), seconds to 0.1."""
    table = pd.DataFrame(rows).sort_values(["backbone", "method", "precision", "attention", "channels_last",
                                         "cache", "compile", "workers", "prefetch"])
    for column in ("train img/s", "eval img/s", "paper min"):
        table[column] = table[column].map(lambda v: f"{v:.3g}")
    for column in ("train s", "eval s", "cache s", "compile s"):
        table[column] = table[column].map(lambda v: f"{v:.1f}")
    return (table.to_markdown(index=False, disable_numparse=True) if markdown
            else table.to_string(index=False))
