"""Leaderboard tables and heatmaps, always regenerated from run records.

One row per pool of repeats (``reporting/pooling.py``: records equal in everything but the seed
and, by default, the domain order): mean ± std over them (sample std, ddof = 1; a single record
shows the mean alone), with the number of seeds and orders it pools. IoU/Dice-based columns are in points (x100); MAE is a fraction of
pixels; storage is MB = 2**20 bytes. Renderers: terminal (tabulate "simple"), markdown (tabulate
"github"), CSV (numbers, mean and std columns) and LaTeX (booktabs via pandas' Styler).
"""
from __future__ import annotations

import math
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from tabulate import tabulate

from benchmark.reporting.domain_metrics import DOMAIN_METRICS, subset_summary
from benchmark.reporting.metrics import SCORE_HIGHER_IS_BETTER, metric_direction, summarize
from benchmark.reporting.pooling import (FLAG, Pooling, ReportError, apply_where, check_key,
                                         pool, training_order, unique_records)
from benchmark.reporting.records import RunRecord, load_records, safe_name
from benchmark.core.storage import StorageLedger
from benchmark.reporting.columns import Column
from scenarios.fileio import atomic_path, atomic_write_text

ARROW = {"higher": "↑", "lower": "↓"}
GROUP = ["method", "backbone", "stream"]
FORMATS = ("terminal", "markdown", "csv", "latex")



COLUMNS: tuple[Column, ...] = (
    Column("AA_iou", "AA mIoU", metric_direction("AA"), 100, 2),
    Column("FM_samcl_iou", "FM (SAMCL)", metric_direction("FM_samcl"), 100, 2),
    Column("BWT_iou", "BWT", metric_direction("BWT"), 100, 2),
    Column("forgetting_iou", "Forgetting", metric_direction("forgetting"), 100, 2),
    Column("FWT_iou", "FWT", metric_direction("FWT"), 100, 2),
    Column("FT_samcl_iou", "FT (SAMCL)", metric_direction("FT_samcl"), 100, 2),
    Column("zero_shot_iou", "Zero-shot mIoU", metric_direction("zero_shot"), 100, 2),
    Column("eval_only_final_iou", "Eval-only mIoU", metric_direction("eval_only_final"), 100, 2),
    Column("AA_dice", "AA Dice", metric_direction("AA"), 100, 2),
    Column("AA_mae", "AA MAE", metric_direction("AA", higher_is_better=False), 1, 4),
    Column("storage_mb", "Storage MB", "lower", 1, 3),
    Column("train_time_s", "Train time (s)", "lower", 1, 1),
)


def header(col: Column) -> str:
    return f"{col.label} {ARROW[col.direction]}"


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------

def summarize_record(record: RunRecord) -> dict[str, float]:
    """Flat metrics of one record: ``<metric>_<score>`` for every score matrix, plus storage_mb,
    train_time_s and the values of the columns the record's method contributes (NaN where absent)."""
    out: dict[str, float] = {}
    for score in record.matrices:
        if score in DOMAIN_METRICS:  # AA and FM over the domains that declare the metric
            R = record.matrix(score)
            values = subset_summary(R, record.trained, np.flatnonzero(~np.isnan(R[-1])),
                                    DOMAIN_METRICS[score].higher_is_better)
        else:
            values = summarize(record.matrix(score), record.trained, SCORE_HIGHER_IS_BETTER[score])
        out.update({f"{name}_{score}": v for name, v in values.items()})
    out["storage_mb"] = _storage_mb(record.storage)
    out["train_time_s"] = _train_time(record.timing)
    for col in record_columns([record]):
        out[col.key] = _number(record.extra.get(col.key))
    return out


def record_columns(records: Sequence[RunRecord]) -> list[Column]:
    """The columns the records' methods contribute, in first-seen order (a key once)."""
    seen: dict[str, Column] = {}
    for r in records:
        for spec in r.columns:
            col = Column.from_dict(spec)
            if col.key not in seen and col.key not in {c.key for c in COLUMNS}:
                seen[col.key] = col
    return list(seen.values())


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float("nan")
    return float(value)


def _storage_mb(storage: dict) -> float:
    if not storage or not storage.get("entries"):
        return float("nan")
    return StorageLedger.from_dict(storage).final_total_mb()


def _train_time(timing: dict) -> float:
    train = timing.get("train") if timing else None
    if isinstance(train, list):
        return float(sum(_number(t) for t in train)) if train else float("nan")
    return _number(train)


def leaderboard_frame(records: Sequence[RunRecord], pooling: Pooling = Pooling()) -> pd.DataFrame:
    """Numbers (unscaled), one row per pool of repeats (``reporting/pooling.py``): method (its
    label), backbone, stream, the group-by keys, seeds, orders, flag, then ``<key>_mean`` /
    ``<key>_std`` per column; sorted by the group-by keys, then by AA mIoU descending. The
    notes on flagged rows are in ``attrs["notes"]``."""
    pooled = pool(records, pooling)
    rows = []
    for i, r in enumerate(pooled.records):
        rows.append({"group": pooled.groups[i], "method": pooled.labels[i], "backbone": r.backbone,
                     "stream": r.stream_name,
                     **{k: v[i] for k, v in pooled.by.items()},
                     "seed": r.seed, "order": "→".join(training_order(r)),
                     "flag": pooled.flagged[i], **summarize_record(r)})
    columns = list(COLUMNS) + record_columns(pooled.records)
    keys = [c.key for c in columns]
    head = GROUP + list(pooling.group_by)
    if not rows:
        out = pd.DataFrame(columns=head + ["seeds", "orders", "flag"]
                           + [f"{k}_{s}" for k in keys for s in ("mean", "std")])
        out.attrs.update(columns=columns, notes=[], group_by=list(pooling.group_by))
        return out
    df = pd.DataFrame(rows)
    for k in keys:
        if k not in df:
            df[k] = np.nan
    grouped = df.groupby("group", sort=False)
    out = pd.concat([grouped[head].first(), grouped["seed"].nunique().rename("seeds"),
                     grouped["order"].nunique().rename("orders"), grouped["flag"].any(),
                     grouped[keys].mean().add_suffix("_mean"),
                     grouped[keys].std(ddof=1).add_suffix("_std")], axis=1)
    by = list(pooling.group_by)
    out = out.sort_values(by + ["AA_iou_mean"], ascending=[True] * len(by) + [False],
                          na_position="last", kind="stable").reset_index(drop=True)
    out.attrs.update(columns=columns, notes=pooled.notes, group_by=by)
    return out


def _columns_shown(frame: pd.DataFrame) -> list[Column]:
    columns = frame.attrs.get("columns", COLUMNS)
    return [c for c in columns if not c.optional or frame[f"{c.key}_mean"].notna().any()]


def _show_stream(frame: pd.DataFrame) -> bool:
    return frame["stream"].nunique() > 1 or "stream" in frame.attrs.get("group_by", [])


def _cell(mean: float, std: float, col: Column, pm: str = "±") -> str:
    if mean is None or not math.isfinite(mean):
        return "–"
    text = f"{mean * col.scale:.{col.decimals}f}"
    if std is not None and math.isfinite(std):
        text += f" {pm} {std * col.scale:.{col.decimals}f}"
    return text


def display_frame(frame: pd.DataFrame, pm: str = "±") -> pd.DataFrame:
    """Strings for printing: "mean ± std" cells, headers with their direction arrow."""
    cols = _columns_shown(frame)
    methods = [f"{m} {FLAG}" if flag else m for m, flag in zip(frame["method"], frame["flag"])]
    out = pd.DataFrame({"Method": methods, "Backbone": frame["backbone"]})
    if _show_stream(frame):
        out["Stream"] = frame["stream"]
    for key in frame.attrs.get("group_by", []):
        if key not in GROUP:
            out[key] = frame[key]
    for c in cols:
        out[header(c)] = [_cell(m, s, c, pm) for m, s in
                          zip(frame[f"{c.key}_mean"], frame[f"{c.key}_std"])]
    out["Seeds"] = frame["seeds"].astype(int)
    out["Orders"] = frame["orders"].astype(int)
    return out


def _stream_text(name: str, records: Sequence[RunRecord]) -> str:
    orders = {tuple(training_order(r)): None for r in records}
    first = records[0]
    ev = ", ".join(first.domains[first.trained:]) or "none"
    if len(orders) == 1:
        trained = " → ".join(next(iter(orders)))
    else:
        trained = (f"{len(orders)} orders of {', '.join(sorted(next(iter(orders))))} ("
                   + "; ".join(" → ".join(o) for o in orders) + ")")
    return f"stream {name!r}: {trained} (evaluation-only: {ev})"


def pooling_text(pooling: Pooling = Pooling()) -> str:
    """What a row's mean ± std is over, for the caption."""
    over = "seeds and domain orders" if pooling.pool_orders else "seeds"
    return (f"Mean ± std over {over} (Seeds and Orders: how many each row pools; sample std; one "
            f"record shows the mean only). A row pools only records equal in everything but the "
            f"seed{' and the training order' if pooling.pool_orders else ''} (their fingerprints; "
            f"records without one: method, backbone, stream, hyper-parameters, run settings); rows "
            f"of one method that differ in more are labelled by what differs; {FLAG}: records of "
            f"one run disagree (notes under the table).")


def caption(records: Sequence[RunRecord], pooling: Pooling = Pooling()) -> str:
    streams: dict[str, list] = {}
    for r in records:
        streams.setdefault(r.stream_name, []).append(r)
    parts = [_stream_text(name, recs) for name, recs in streams.items()]
    return ("; ".join(parts) + ". " + pooling_text(pooling) + " "
            "IoU-based columns and AA Dice in points (×100); AA MAE as a fraction of pixels. "
            "AA, FM and FT as SAMCL defines them; BWT and FWT (b = zero-shot) as Lopez-Paz & "
            "Ranzato, Forgetting as Chaudhry; evaluation-only domains are left out of every "
            "average except Eval-only mIoU (final). Storage: MB (2^20 bytes) kept beyond the "
            "frozen backbone after the last domain; train time: sum over domains. "
            "↑ / ↓: higher / lower is better.")


def per_domain_frame(records: Sequence[RunRecord], score: str = "iou",
                     pooling: Pooling = Pooling()) -> pd.DataFrame:
    """Final score (row T) per domain, mean over a row's records (domains matched by name, so
    over orders too), in display units (x100 for IoU/Dice); rows as in the leaderboard (method
    label, backbone, stream, group-by keys); evaluation-only domains are suffixed " (eval)"."""
    pooled = pool(records, pooling)
    head = GROUP + list(pooling.group_by)
    rows, order = [], {}
    for i, r in enumerate(pooled.records):
        if score not in r.matrices:
            continue
        final = r.matrix(score)[r.trained]
        row = {"group": pooled.groups[i], "method": pooled.labels[i], "backbone": r.backbone,
               "stream": r.stream_name, **{k: v[i] for k, v in pooled.by.items()}}
        for j, name in enumerate(r.domains):
            label = name if j < r.trained else f"{name} (eval)"
            order.setdefault(label, None)
            row[label] = final[j] * (1 if score == "mae" else 100)
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=head)
    grouped = pd.DataFrame(rows).groupby("group", sort=False)
    out = pd.concat([grouped[head].first(), grouped[list(order)].mean()], axis=1)
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Renderers
# --------------------------------------------------------------------------------------------

def _notes(frame: pd.DataFrame) -> str:
    notes = frame.attrs.get("notes") or []
    return "\n".join(notes) + "\n\n" if notes else ""


def render_terminal(records: Sequence[RunRecord], pooling: Pooling = Pooling()) -> str:
    if not records:
        return "(no run records)"
    frame = leaderboard_frame(records, pooling)
    table = tabulate(display_frame(frame), headers="keys",
                     tablefmt="simple", showindex=False, disable_numparse=True)
    return table + "\n\n" + _notes(frame) + textwrap.fill(caption(records, pooling), width=100)


def render_markdown(records: Sequence[RunRecord], pooling: Pooling = Pooling()) -> str:
    frame = leaderboard_frame(records, pooling)
    table = tabulate(display_frame(frame), headers="keys",
                     tablefmt="github", showindex=False, disable_numparse=True)
    return table + "\n\n" + _notes(frame) + caption(records, pooling) + "\n"


def render_csv(records: Sequence[RunRecord], pooling: Pooling = Pooling()) -> str:
    """Numbers in display units (x100 for IoU/Dice-based columns); mean and std columns; a
    ``flag`` column (true where records of one run disagree)."""
    frame = leaderboard_frame(records, pooling)
    out = frame[GROUP + list(pooling.group_by) + ["seeds", "orders", "flag"]].copy()
    for c in _columns_shown(frame):
        for stat in ("mean", "std"):
            out[f"{header(c)} {stat}"] = (frame[f"{c.key}_{stat}"] * c.scale).round(6)
    return out.to_csv(index=False)


def _latex_escape(text: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
            "^": r"\textasciicircum{}"}
    text = "".join(repl.get(ch, ch) for ch in str(text))
    for sym, tex in (("±", r"$\pm$"), ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$"),
                     ("×", r"$\times$"), ("→", r"$\rightarrow$"), ("–", "--"),
                     (FLAG, r"$\dagger$"), ("…", r"\ldots{}")):
        text = text.replace(sym, tex)
    return text


def render_latex(records: Sequence[RunRecord], pooling: Pooling = Pooling()) -> str:
    frame = leaderboard_frame(records, pooling)
    disp = display_frame(frame)
    n_text = len(disp.columns) - sum(header(c) in disp.columns for c in _columns_shown(frame)) - 2
    disp = disp.astype(str).map(_latex_escape)
    disp.columns = [_latex_escape(c) for c in disp.columns]
    styler = disp.style.hide(axis="index")
    notes = " ".join(frame.attrs.get("notes") or [])
    return styler.to_latex(hrules=True, caption=_latex_escape(caption(records, pooling)
                                                             + (" " + notes if notes else "")),
                           column_format="l" * n_text + "r" * (disp.shape[1] - n_text),
                           label="tab:leaderboard", position_float="centering")


def _write(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    return path


def write_tables(records: Sequence[RunRecord], out_dir: str | Path,
                 formats: Iterable[str] = FORMATS, per_domain: bool = True,
                 pooling: Pooling = Pooling()) -> dict[str, Path]:
    """Write the leaderboard in each format (leaderboard.{txt,md,csv,tex}) and, with
    ``per_domain``, the final IoU per domain (per_domain_iou.{md,csv}); return name -> path."""
    out_dir = Path(out_dir)
    formats = list(formats)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown table format(s) {sorted(unknown)}; choose from {FORMATS}")
    renderers = {"terminal": ("leaderboard.txt", render_terminal),
                 "markdown": ("leaderboard.md", render_markdown),
                 "csv": ("leaderboard.csv", render_csv),
                 "latex": ("leaderboard.tex", render_latex)}
    written = {}
    for fmt in formats:
        name, fn = renderers[fmt]
        text = fn(records, pooling)
        written[fmt] = _write(out_dir / name, text if text.endswith("\n") else text + "\n")
    if per_domain:
        frame = per_domain_frame(records, "iou", pooling)
        if "markdown" in formats or "terminal" in formats:
            md = tabulate(frame, headers="keys", tablefmt="github", showindex=False,
                          floatfmt=".2f")
            over = "seeds and domain orders" if pooling.pool_orders else "seeds"
            note = (f"\n\nFinal IoU (x100) per domain after the last trained domain, mean over "
                    f"{over}.\n")
            written["per_domain_markdown"] = _write(out_dir / "per_domain_iou.md", md + note)
        if "csv" in formats:
            written["per_domain_csv"] = _write(out_dir / "per_domain_iou.csv",
                                               frame.round(6).to_csv(index=False))
    return written


# --------------------------------------------------------------------------------------------
# Heatmaps
# --------------------------------------------------------------------------------------------

@dataclass
class MatrixView:
    """A score matrix with its labels (one record's, or the mean over seeds)."""
    matrix: np.ndarray
    domains: list[str]
    trained: int
    title: str
    score: str = "iou"


def mean_matrix(records: Sequence[RunRecord], score: str = "iou",
                label: str | None = None) -> MatrixView:
    """Element-wise mean over records that share the same domain order (``label``: the method's
    name in the title, default ``method_label``)."""
    if not records:
        raise ValueError("mean_matrix needs at least one record")
    first = records[0]
    for r in records[1:]:
        if r.domains != first.domains or r.trained != first.trained:
            raise ValueError(f"cannot average R matrices with different domain orders "
                             f"({first.domains} vs {r.domains})")
    stacked = np.stack([r.matrix(score) for r in records])
    seeds = ", ".join(str(r.seed) for r in records)
    return MatrixView(stacked.mean(axis=0), first.domains, first.trained,
                      f"{label or first.method_label} / {first.backbone} / {first.stream_name}\n"
                      f"mean over seeds {seeds}", score)


def _view(obj: RunRecord | MatrixView, score: str) -> MatrixView:
    if isinstance(obj, MatrixView):
        return obj
    return MatrixView(obj.matrix(score), obj.domains, obj.trained,
                      f"{obj.method_label} / {obj.backbone} / {obj.stream_name}\nseed {obj.seed}", score)


def plot_matrix(record_or_mean: RunRecord | MatrixView, metric: str = "iou",
                path: str | Path = "heatmap.png") -> Path:
    """PNG heatmap of R: rows zero-shot + after each trained domain, columns the domains
    (evaluation-only ones marked), values annotated (x100 for IoU/Dice)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    view = _view(record_or_mean, metric)
    scale, fmt = (1, "{:.3f}") if metric == "mae" else (100, "{:.1f}")
    data = np.asarray(view.matrix, dtype=float) * scale
    rows = ["zero-shot"] + [f"after {d}" for d in view.domains[:view.trained]]
    cols = [d if j < view.trained else f"{d}\n(eval-only)" for j, d in enumerate(view.domains)]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 + 1.0 * len(cols)), 1.6 + 0.55 * len(rows)))
    cmap = "viridis_r" if metric == "mae" else "viridis"
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, aspect="auto")
    finite = data[np.isfinite(data)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            v = data[i, j]
            text = fmt.format(v) if math.isfinite(v) else "–"
            dark = (v < mid) != (metric == "mae") if math.isfinite(v) else False
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    if view.trained < len(cols):
        ax.axvline(view.trained - 0.5, color="red", linewidth=1.5)
    ax.set_xticks(range(len(cols)), cols, fontsize=8, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    label = {"iou": "IoU (x100)", "dice": "Dice (x100)", "mae": "MAE"}.get(metric, metric)
    ax.set_title(f"{view.title}, {label}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def write_heatmaps(records: Sequence[RunRecord], out_dir: str | Path,
                   metric: str = "iou", pooling: Pooling = Pooling()) -> list[Path]:
    """One heatmap per leaderboard row: the mean over its records when their domain orders
    agree, else one per record (``__seed<k>__`` and, across orders, the order in the name)."""
    pooled = pool(records, pooling)
    groups: dict[int, list[RunRecord]] = {}
    stems: dict[int, str] = {}
    labels: dict[int, str] = {}
    for i, r in enumerate(pooled.records):
        if metric in r.matrices:
            groups.setdefault(pooled.groups[i], []).append(r)
            labels[pooled.groups[i]] = pooled.labels[i]
            stems[pooled.groups[i]] = "__".join(
                safe_name(k) for k in [pooled.labels[i], r.backbone, r.stream_name]
                + [v[i] for v in pooled.by.values()])
    paths = []
    for g, recs in groups.items():
        recs = sorted(recs, key=lambda r: (r.seed, training_order(r)))
        try:
            views = [mean_matrix(recs, metric, label=labels[g])]
            names = [f"{stems[g]}__{metric}.png"]
        except ValueError:
            views = recs
            names = [f"{stems[g]}__seed{r.seed}__{safe_name('-'.join(training_order(r)))}__"
                     f"{metric}.png" for r in recs]
        for v, name in zip(views, names):
            paths.append(plot_matrix(v, metric, Path(out_dir) / name))
    return paths


# --------------------------------------------------------------------------------------------
# CLI entry (``python run_benchmark.py report``)
# --------------------------------------------------------------------------------------------

def dedup_records(records: Sequence[RunRecord]) -> list[RunRecord]:
    """One record per run (``pooling.identity``: the fingerprint, else the run id; the latest
    ``created`` wins), so result folders merged from several machines count a run once. Records
    with neither are all kept. (The leaderboard also flags disagreeing duplicates.)"""
    return unique_records(records)[0]


def select_records(results_dirs: Sequence[str], pooling: Pooling = Pooling(),
                   where: Sequence[str] = ()) -> list[RunRecord]:
    """The records of the folders that match ``where``; a ReportError for an unknown
    ``group_by`` or ``where`` key."""
    records = load_records(results_dirs)
    if records:
        for key in pooling.group_by:
            check_key(records, key, "--group-by")
        records = apply_where(records, where)
    return records


def report_main(results_dirs: list[str], out_dir: str, formats: Iterable[str] = FORMATS,
                heatmaps: bool = True, pooling: Pooling = Pooling(),
                where: Sequence[str] = ()) -> int:
    """Load records, print the terminal table, write tables (and heatmaps); return an exit code."""
    try:
        records = select_records(results_dirs, pooling, where)
    except (FileNotFoundError, ReportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not records:
        print(f"no run records found in {', '.join(map(str, results_dirs))}", file=sys.stderr)
        return 1
    print(render_terminal(records, pooling))
    written = write_tables(records, out_dir, formats, pooling=pooling)
    if heatmaps:
        hm = write_heatmaps(records, Path(out_dir) / "heatmaps", pooling=pooling)
        if hm:
            written["heatmaps"] = hm[0].parent
    print(f"\n{len(dedup_records(records))} record(s); wrote:")
    for name, path in written.items():
        print(f"  {name}: {path}")
    return 0
