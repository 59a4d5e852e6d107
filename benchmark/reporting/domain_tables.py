"""Per-domain tables of the domains' own metrics (``domain_metrics.py``): for each extra metric
in the records, its final value on every domain that declares it, and its AA and FM over those
domains, mean over seeds, in points (x100; BER in percent)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from benchmark.reporting.domain_metrics import DOMAIN_METRICS, subset_summary
from benchmark.reporting.leaderboard import GROUP, per_domain_frame, table_labels
from benchmark.reporting.records import RunRecord
from scenarios.fileio import atomic_write_text


def extra_metrics(records: Sequence[RunRecord]) -> list[str]:
    """The domain metrics any record carries, in DOMAIN_METRICS order."""
    present = {m for r in records for m in r.matrices}
    return [m for m in DOMAIN_METRICS if m in present]


def domain_metric_frame(records: Sequence[RunRecord], metric: str) -> pd.DataFrame:
    """Rows (method, backbone, stream); columns: the declaring domains' final values, AA, FM."""
    with_metric = [r for r in records if metric in r.matrices]
    frame = per_domain_frame(with_metric, metric).dropna(axis=1, how="all")
    rows = []
    for r, label in zip(with_metric, table_labels(with_metric)):
        R = r.matrix(metric)
        summary = subset_summary(R, r.trained, np.flatnonzero(~np.isnan(R[-1])),
                                 DOMAIN_METRICS[metric].higher_is_better)
        rows.append({"method": label, "backbone": r.backbone, "stream": r.stream_name,
                     "AA": 100 * summary["AA"], "FM": 100 * summary["FM_samcl"]})
    if not rows:
        return frame
    means = pd.DataFrame(rows).groupby(GROUP, sort=False)[["AA", "FM"]].mean().reset_index()
    return frame.merge(means, on=GROUP, how="left")


def caption(metric: str) -> str:
    info = DOMAIN_METRICS[metric]
    better = "higher" if info.higher_is_better else "lower"
    fm = "" if info.higher_is_better else " (a positive FM: the error fell after training)"
    return (f"{info.label} (x100, {better} is better) after the last trained domain on the domains "
            f"that declare it, mean over seeds; AA and FM (SAMCL's) over those domains{fm}.")


def write_domain_metric_tables(records: Sequence[RunRecord], out_dir: str | Path) -> list[Path]:
    """per_domain_<metric>.{md,csv} for each of the domains' own metrics the records carry."""
    from tabulate import tabulate

    written = []
    for metric in extra_metrics(records):
        frame = domain_metric_frame(records, metric)
        md = tabulate(frame, headers="keys", tablefmt="github", showindex=False, floatfmt=".2f")
        for name, text in ((f"per_domain_{metric}.md", md + "\n\n" + caption(metric) + "\n"),
                           (f"per_domain_{metric}.csv", frame.round(6).to_csv(index=False))):
            atomic_write_text(Path(out_dir) / name, text)
            written.append(Path(out_dir) / name)
    return written
