"""Per-domain tables of the domains' own metrics (``domain_metrics.py``): for each extra metric
in the records, its final value on every domain that declares it, and its AA and FM over those
domains, mean over seeds, in points (x100; BER in percent)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from benchmark.reporting.domain_metrics import DOMAIN_METRICS, subset_summary
from benchmark.reporting.leaderboard import per_domain_frame
from benchmark.reporting.pooling import Pooling, pool
from benchmark.reporting.records import RunRecord
from scenarios.fileio import atomic_write_text


def extra_metrics(records: Sequence[RunRecord]) -> list[str]:
    """The domain metrics any record carries, in DOMAIN_METRICS order."""
    present = {m for r in records for m in r.matrices}
    return [m for m in DOMAIN_METRICS if m in present]


def domain_metric_frame(records: Sequence[RunRecord], metric: str,
                        pooling: Pooling = Pooling()) -> pd.DataFrame:
    """Rows as in the leaderboard; columns: the declaring domains' final values, AA, FM."""
    with_metric = [r for r in records if metric in r.matrices]
    frame = per_domain_frame(with_metric, metric, pooling).dropna(axis=1, how="all")
    pooled = pool(with_metric, pooling)
    rows = []
    for r, group in zip(pooled.records, pooled.groups):
        R = r.matrix(metric)
        summary = subset_summary(R, r.trained, np.flatnonzero(~np.isnan(R[-1])),
                                 DOMAIN_METRICS[metric].higher_is_better)
        rows.append({"group": group, "AA": 100 * summary["AA"], "FM": 100 * summary["FM_samcl"]})
    if rows:  # per_domain_frame lists the rows in the same (first-seen group) order
        means = pd.DataFrame(rows).groupby("group", sort=False)[["AA", "FM"]].mean()
        frame[["AA", "FM"]] = means.to_numpy()
    return frame


def caption(metric: str) -> str:
    info = DOMAIN_METRICS[metric]
    better = "higher" if info.higher_is_better else "lower"
    fm = "" if info.higher_is_better else " (a positive FM: the error fell after training)"
    return (f"{info.label} (x100, {better} is better) after the last trained domain on the domains "
            f"that declare it, mean over seeds; AA and FM (SAMCL's) over those domains{fm}.")


def write_domain_metric_tables(records: Sequence[RunRecord], out_dir: str | Path,
                               pooling: Pooling = Pooling()) -> list[Path]:
    """per_domain_<metric>.{md,csv} for each of the domains' own metrics the records carry."""
    from tabulate import tabulate

    written = []
    for metric in extra_metrics(records):
        frame = domain_metric_frame(records, metric, pooling)
        md = tabulate(frame, headers="keys", tablefmt="github", showindex=False, floatfmt=".2f")
        for name, text in ((f"per_domain_{metric}.md", md + "\n\n" + caption(metric) + "\n"),
                           (f"per_domain_{metric}.csv", frame.round(6).to_csv(index=False))):
            atomic_write_text(Path(out_dir) / name, text)
            written.append(Path(out_dir) / name)
    return written
