"""Paired bootstrap confidence intervals between each method and the best one, from the per-image
scores of runs made with ``--log-samples`` (``engine/samples.py``).

For each (backbone, stream), the rows of the leaderboard whose records carry per-image files are
compared with the row of highest AA (final score on the trained domains). Per image of a trained
domain, the final-row score is averaged over the row's seeds; the difference best - method is
paired by (domain, image), and its AA-weighted mean (weight 1 / (T * images of the domain), so the
statistic is exactly the AA difference) is bootstrapped with ``scipy.stats.bootstrap``
(``paired=True``, percentile intervals). A difference whose interval contains 0 is marked "n.s.".
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from benchmark.reporting.pooling import Pooling, pool
from benchmark.reporting.records import RunRecord


def final_image_scores(record: RunRecord, score: str = "iou") -> Optional[pd.Series]:
    """The record's final-row scores per (domain, image) of its trained domains, or None when it
    has no per-image file (or the file is missing)."""
    name = record.extra.get("samples_file")
    folder = getattr(record, "source_path", None)
    if not name or folder is None or not (Path(folder).parent / name).is_file():
        return None
    frame = pd.read_csv(Path(folder).parent / name)
    trained = set(record.domains[:record.trained])
    final = frame[(frame["row"] == record.trained) & frame["domain"].isin(trained)]
    return final.set_index(["domain", "image"])[score]


def _weighted_mean(diff, weight, axis=-1):
    return np.sum(diff * weight, axis=axis) / np.sum(weight, axis=axis)


def _interval(diff: np.ndarray, weight: np.ndarray, n_resamples: int, confidence: float,
              seed: int) -> tuple[float, float]:
    from scipy.stats import bootstrap

    res = bootstrap((diff, weight), _weighted_mean, paired=True, vectorized=True,
                    n_resamples=n_resamples, confidence_level=confidence, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def significance_frame(records: Sequence[RunRecord], score: str = "iou", n_resamples: int = 2000,
                       confidence: float = 0.95, seed: int = 0,
                       pooling: Pooling = Pooling()) -> pd.DataFrame:
    """One row per leaderboard row with per-image scores: AA, its difference to the best row of
    the same backbone and stream, the interval, and whether the difference is significant."""
    groups: dict[tuple, list[pd.Series]] = {}
    pooled = pool(records, pooling)
    for r, label in zip(pooled.records, pooled.labels):
        scores = final_image_scores(r, score)
        if scores is not None:
            groups.setdefault((r.backbone, r.stream_name, label), []).append(scores)
    rows = []
    for (backbone, stream), members in _by_board(groups).items():
        per_image = {label: pd.concat(s, axis=1).mean(axis=1) for label, s in members.items()}
        aa = {label: v.groupby(level="domain").mean().mean() for label, v in per_image.items()}
        best = max(aa, key=aa.get)
        for label, values in per_image.items():
            row = {"method": label, "backbone": backbone, "stream": stream, "AA": 100 * aa[label],
                   "best": best, "delta": 100 * (aa[label] - aa[best]),
                   "ci_low": np.nan, "ci_high": np.nan, "significant": ""}
            if label != best:
                row.update(_compare(per_image[best], values, n_resamples, confidence, seed))
            rows.append(row)
    return pd.DataFrame(rows)


def _by_board(groups: dict) -> dict:
    boards: dict[tuple, dict] = {}
    for (backbone, stream, label), members in groups.items():
        boards.setdefault((backbone, stream), {})[label] = members
    return boards


def _compare(best: pd.Series, other: pd.Series, n_resamples: int, confidence: float,
             seed: int) -> dict:
    both = pd.concat([best, other], axis=1, join="inner").dropna()
    if len(both) < 2:
        return {"significant": "too few images"}
    counts = both.groupby(level="domain").size()
    domains = both.index.get_level_values("domain")
    weight = 1.0 / (len(counts) * counts.loc[domains].to_numpy())
    diff = (both.iloc[:, 1] - both.iloc[:, 0]).to_numpy()
    low, high = _interval(diff, weight, n_resamples, confidence, seed)
    return {"ci_low": 100 * low, "ci_high": 100 * high,
            "significant": "n.s." if low <= 0 <= high else "yes"}


def render_significance(frame: pd.DataFrame, confidence: float = 0.95) -> str:
    from tabulate import tabulate

    shown = frame.copy()
    shown["Δ AA vs best"] = [
        "" if np.isnan(lo) else f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"
        for d, lo, hi in zip(shown["delta"], shown["ci_low"], shown["ci_high"])]
    shown["AA"] = shown["AA"].map(lambda v: f"{v:.2f}")
    shown = shown[["method", "backbone", "stream", "AA", "Δ AA vs best", "significant"]]
    note = (f"\n\nPaired bootstrap ({int(confidence * 100)}% percentile interval, images paired by "
            "domain and name, final row, AA-weighted) of each row's AA minus the best row's; "
            "n.s.: the interval contains 0.")
    return tabulate(shown, headers="keys", tablefmt="github", showindex=False) + note + "\n"
