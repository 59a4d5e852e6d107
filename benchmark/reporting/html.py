"""One self-contained static HTML page of run records (``run_benchmark.py report --html``).

Everything is inline (CSS, a few lines of JavaScript, figures as base64 PNG from matplotlib), so
the page opens offline. It is built on the leaderboard's public functions (``leaderboard_frame``,
``display_frame``, ``per_domain_frame``, ``mean_matrix``, ``plot_matrix``) and rendered by Jinja2
from ``templates/report.html.j2``. Sections: the sortable leaderboard, per-domain tables (final,
right after training, zero-shot), plots (each domain's score over the stream, AA against storage
with the Pareto front, forgetting per domain), one card per method (description, resolved
hyper-parameters, storage breakdown, R heatmap), provenance of every run and a two-way diff.
"""
from __future__ import annotations

import base64
import io
import json
import math
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.core.storage import StorageLedger
from benchmark.reporting.leaderboard import (COLUMNS, caption, display_frame, header,
                                             leaderboard_frame, mean_matrix, per_domain_frame,
                                             plot_matrix)
from benchmark.reporting.records import RunRecord
from scenarios.fileio import atomic_write_text

#: per-domain views: title -> which row of R each domain's score comes from
STAGES = {"final": "Final score (after the last trained domain)",
          "after": "Right after training on the domain (R[d+1, d])",
          "zero": "Zero-shot (R[0, d])"}


# --------------------------------------------------------------------------------------------
# Groups of records (one method card, one line per plot)
# --------------------------------------------------------------------------------------------

def group_records(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """Records by ``method_label`` (``/ backbone``, ``/ stream`` when the records have several),
    in first-seen order."""
    many_bb = len({r.backbone for r in records}) > 1
    many_streams = len({r.stream_name for r in records}) > 1
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        name = r.method_label + (f" / {r.backbone}" if many_bb else "") \
            + (f" / {r.stream_name}" if many_streams else "")
        groups.setdefault(name, []).append(r)
    return groups


def _mean_view(recs: Sequence[RunRecord], label: str, score: str = "iou"):
    """The mean R over records sharing the first one's domain order (others are left out)."""
    first = recs[0]
    same = [r for r in recs if r.domains == first.domains and r.trained == first.trained]
    return mean_matrix(sorted(same, key=lambda r: r.seed), score, label=label)


def stage_record(record: RunRecord, stage: str) -> RunRecord:
    """A copy of ``record`` whose last row of R holds the ``stage`` scores, so that
    ``per_domain_frame`` (which tables the last row) tables them: "final" (row T), "after"
    (R[d+1, d] per trained domain; NaN for evaluation-only ones) or "zero" (row 0)."""
    if stage == "final":
        return record
    matrices = {}
    for score in record.matrices:
        m = record.matrix(score).copy()
        if stage == "zero":
            m[-1] = m[0]
        else:
            t = record.trained
            m[-1] = [m[d + 1, d] if d < t else math.nan for d in range(m.shape[1])]
        matrices[score] = m.tolist()
    return replace(record, matrices=matrices, zero_shot={})


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

def leaderboard_table(records: Sequence[RunRecord]) -> dict:
    """Headers (text, sort key, direction) and rows (text cells with their numeric sort values)
    of the leaderboard, as ``display_frame`` shows it."""
    frame = leaderboard_frame(records)
    disp = display_frame(frame)
    by_header = {header(c): c for c in frame.attrs.get("columns") or COLUMNS}
    heads = []
    for name in disp.columns:
        col = by_header.get(name)
        key = col.key if col is not None else name.lower()
        heads.append({"text": name, "key": key,
                      "direction": col.direction if col is not None else
                      ("higher" if name == "Seeds" else "text")})
    rows = []
    for i in range(len(disp)):
        cells = []
        for h, text in zip(heads, disp.iloc[i]):
            col = by_header.get(h["text"])
            value = frame.iloc[i][f"{col.key}_mean"] if col is not None else \
                frame.iloc[i].get(h["key"], text)  # method, backbone, stream, seeds
            if isinstance(value, (float, np.floating)):
                value = float(value) if math.isfinite(value) else None
            elif isinstance(value, (int, np.integer)):
                value = int(value)
            cells.append({"text": str(text), "value": value})
        rows.append({"method": str(frame.iloc[i]["method"]), "cells": cells})
    return {"headers": heads, "rows": rows, "caption": caption(records)}


def per_domain_tables(records: Sequence[RunRecord], score: str = "iou") -> list[dict]:
    """One table per stage (final, right after training, zero-shot): ``per_domain_frame`` of the
    records' stage views, numbers rounded for display."""
    tables = []
    for stage, title in STAGES.items():
        frame = per_domain_frame([stage_record(r, stage) for r in records if score in r.matrices],
                                 score)
        heads = [str(c) for c in frame.columns]
        rows = [["–" if isinstance(v, float) and not math.isfinite(v) else
                 (f"{v:.2f}" if isinstance(v, float) else str(v)) for v in row]
                for row in frame.itertuples(index=False)]
        tables.append({"stage": stage, "title": title, "headers": heads, "rows": rows})
    return tables


def storage_breakdown(storage: dict) -> list[tuple[str, str]]:
    """(component, MB) kept after the last domain, largest first."""
    if not storage or not storage.get("entries"):
        return []
    items = sorted(StorageLedger.from_dict(storage).final().items(), key=lambda kv: -kv[1])
    return [(name, f"{b / 2 ** 20:.3f}") for name, b in items]


# --------------------------------------------------------------------------------------------
# Figures (matplotlib, inlined as base64 PNG)
# --------------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> str:
    """A ``data:`` URI of the figure as PNG (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plot_domains_over_stream(groups: dict[str, list[RunRecord]]) -> str:
    """One panel per domain: its IoU (x100) after each stage of the stream, one line per group
    (mean over its records with the first record's domain order)."""
    plt = _pyplot()
    views = {name: _mean_view(recs, name) for name, recs in groups.items()}
    first = next(iter(views.values()))
    domains = first.domains
    cols = min(len(domains), 4)
    rows = math.ceil(len(domains) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    stages = ["zero-shot"] + [f"after {d}" for d in first.domains[:first.trained]]
    for j, domain in enumerate(domains):
        ax = axes[j // cols][j % cols]
        for name, view in views.items():
            if domain in view.domains and len(view.matrix) == len(stages):
                ax.plot(range(len(stages)), view.matrix[:, view.domains.index(domain)] * 100,
                        marker="o", markersize=3, label=name)
        ax.set_title(domain + ("" if j < first.trained else " (eval-only)"), fontsize=9)
        ax.set_xticks(range(len(stages)), stages, rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("IoU (x100)", fontsize=8)
        ax.grid(alpha=0.3)
    for k in range(len(domains), rows * cols):
        axes[k // cols][k % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 5), fontsize=8,
               bbox_to_anchor=(0.5, 1.0 + 0.06 / rows))
    fig.tight_layout()
    return figure_png(fig)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (storage, score) no other point beats on both (less or equal
    storage and higher or equal score, one strictly), by increasing storage."""
    front = []
    for i, (s, a) in enumerate(points):
        dominated = any((s2 <= s and a2 >= a) and (s2 < s or a2 > a) for s2, a2 in points)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot_aa_storage(table: dict) -> str:
    """AA mIoU (x100) against storage MB (symlog axis: zero-storage methods stay visible), one
    point per leaderboard row, the Pareto front drawn as a step line."""
    plt = _pyplot()
    keys = [h["key"] for h in table["headers"]]
    pts, names = [], []
    for row in table["rows"]:
        aa, mb = (row["cells"][keys.index(k)]["value"] for k in ("AA_iou", "storage_mb"))
        if aa is not None and mb is not None:
            pts.append((mb, aa * 100))
            names.append(row["method"])
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    front = pareto_front(pts)
    for i, ((mb, aa), name) in enumerate(zip(pts, names)):
        ax.scatter(mb, aa, s=36, color="crimson" if i in front else "steelblue", zorder=3)
        ax.annotate(name, (mb, aa), fontsize=7, xytext=(4, 3), textcoords="offset points")
    if front:
        ax.step([pts[i][0] for i in front], [pts[i][1] for i in front], where="post",
                color="crimson", alpha=0.6, label="Pareto front")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("storage MB (kept beyond the frozen backbone; symlog)")
    ax.set_ylabel("AA mIoU (x100)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def plot_forgetting(groups: dict[str, list[RunRecord]]) -> str:
    """Grouped bars: per trained domain but the last, the drop R[d+1, d] - R[T, d] (x100) from
    right after training on it to the end of the stream, one bar per group (mean view)."""
    plt = _pyplot()
    views = {name: _mean_view(recs, name) for name, recs in groups.items()}
    first = next(iter(views.values()))
    domains = first.domains[:first.trained - 1] or first.domains[:1]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(domains) * max(1, len(views)) / 3), 3.8))
    width = 0.8 / max(1, len(views))
    for k, (name, view) in enumerate(views.items()):
        drops = [(view.matrix[view.domains.index(d) + 1, view.domains.index(d)]
                  - view.matrix[view.trained, view.domains.index(d)]) * 100
                 if d in view.domains[:view.trained] else np.nan for d in domains]
        ax.bar(np.arange(len(domains)) + k * width - 0.4 + width / 2, drops, width, label=name)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(domains)), domains, fontsize=8)
    ax.set_ylabel("forgetting: IoU drop (x100)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return figure_png(fig)


def heatmap_png(recs: Sequence[RunRecord], name: str) -> str:
    """``plot_matrix`` of the group's mean R (IoU), as a data URI."""
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_matrix(_mean_view(recs, name), "iou", Path(tmp) / "r.png")
        data = path.read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------------------------
# Method cards, provenance, diff data
# --------------------------------------------------------------------------------------------

def method_description(method: str) -> str:
    """The method's docstring from the registry (read from its file, nothing imported); the page
    works from records alone, so a method not registered here gets a note instead."""
    from benchmark.core.registry import method_doc

    try:
        return method_doc(method)[1] or "(no docstring)"
    except (KeyError, RuntimeError, ImportError, SyntaxError, OSError):
        return "(no description: the method is not registered in this installation)"


def method_cards(groups: dict[str, list[RunRecord]]) -> list[dict]:
    """Per group: description, the distinct resolved hyper-parameter sets with their seeds,
    storage breakdown and R heatmap."""
    cards = []
    for k, (name, recs) in enumerate(groups.items()):
        settings: dict[str, dict] = {}
        for r in recs:
            text = json.dumps(r.hparams, sort_keys=True, default=str)
            settings.setdefault(text, {"seeds": [], "hparams": r.hparams})["seeds"].append(r.seed)
        cards.append({"id": f"m{k}", "name": name, "method": recs[0].method,
                      "description": method_description(recs[0].method),
                      "settings": [{"seeds": ", ".join(map(str, s["seeds"])),
                                    "rows": [(key, json.dumps(v, default=str))
                                              for key, v in sorted(s["hparams"].items())]}
                                   for s in settings.values()],
                      "storage": storage_breakdown(recs[0].storage),
                      "heatmap": heatmap_png(recs, name)})
    return cards


def provenance(record: RunRecord) -> dict:
    """What a run's record says about how it was made (missing entries: "not recorded")."""
    git = record.git or {}
    timing = record.timing or {}
    seconds = {k: timing[k] for k in ("cache_build", "train_total", "total") if
               isinstance(timing.get(k), (int, float))}
    command = record.extra.get("command")
    return {"run": f"{record.method_label} / {record.backbone} / {record.stream_name} / "
                   f"seed {record.seed}",
            "created": record.created or "not recorded",
            "command": " ".join(map(str, command)) if command else "not recorded",
            "commit": (git.get("commit", "")[:12] + (" (dirty)" if git.get("dirty") else ""))
            if git else "not recorded",
            "packages": ", ".join(f"{k} {v}" for k, v in record.packages.items() if v)
            or "not recorded",
            "device": f"{record.device or '?'}, python {record.python or '?'}",
            "times": ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) or "not recorded",
            "order": " → ".join(record.domains[:record.trained]),
            "manifests": sorted((record.extra.get("data_manifests") or {}).items()),
            "fingerprint": sorted((k, json.dumps(v, default=str)[:80]) for k, v in
                                  (getattr(record, "fingerprint", None) or {}).items())}


def _scores(matrix: np.ndarray, domains: list[str], trained: int) -> list[dict]:
    out = []
    for j, d in enumerate(domains):
        after = matrix[j + 1, j] if j < trained else math.nan
        out.append({"domain": d, **{s: None if not math.isfinite(v) else round(float(v) * 100, 3)
                                    for s, v in (("final", matrix[trained, j]), ("after", after),
                                                 ("zero", matrix[0, j]))}})
    return out


def diff_data(groups: dict[str, list[RunRecord]]) -> list[dict]:
    """Per-domain IoU (x100; final, right after training, zero-shot) of each group (mean over
    its records), then of each run of the groups with several, for the page's diff view."""
    means, runs = [], []
    for name, recs in groups.items():
        view = _mean_view(recs, name)
        label = f"{name} (mean of {len(recs)})" if len(recs) > 1 else name
        means.append({"name": label, "domains": _scores(view.matrix, view.domains, view.trained)})
        if len(recs) > 1:
            runs += [{"name": f"{name} seed {r.seed}",
                      "domains": _scores(r.matrix("iou"), r.domains, r.trained)} for r in recs]
    return means + runs


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------

def page_context(records: Sequence[RunRecord], title: str = "samcl-bench leaderboard") -> dict:
    """Everything the template shows."""
    groups = group_records(records)
    table = leaderboard_table(records)
    return {"title": title, "leaderboard": table, "per_domain": per_domain_tables(records),
            "plots": [("IoU of each domain over the stream", plot_domains_over_stream(groups)),
                      ("AA against storage (Pareto front in red)", plot_aa_storage(table)),
                      ("Forgetting per domain", plot_forgetting(groups))],
            "cards": method_cards(groups), "card_of": card_ids(groups),
            "provenance": [provenance(r) for r in records], "diff": diff_data(groups),
            "n_records": len(records)}


def card_ids(groups: dict[str, list[RunRecord]]) -> dict[str, str]:
    """Leaderboard method label -> id of its (first) method card."""
    out: dict[str, str] = {}
    for k, recs in enumerate(groups.values()):
        out.setdefault(recs[0].method_label, f"m{k}")
    return out


def render_page(records: Sequence[RunRecord]) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("benchmark.reporting", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined)
    return env.get_template("report.html.j2").render(**page_context(records))


def write_html(records: Sequence[RunRecord], path: str | Path) -> Path:
    """Write the page (atomically) and return its path."""
    if not records:
        raise ValueError("no run records to put on the page")
    path = Path(path)
    atomic_write_text(path, render_page(records))
    return path


def html_main(results: Sequence[str], path: str | Path, where: Sequence[str] = ()) -> int:
    """``report --html``: the page of the records under ``results`` that match ``where``;
    return an exit code."""
    from benchmark.reporting.leaderboard import dedup_records, select_records

    records = dedup_records(select_records(results, where=where))
    print(f"page: {write_html(records, path)}")
    return 0
