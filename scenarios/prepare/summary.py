"""The manifest (OUT/manifest.json) and the summary printed at the end of `prepare`."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from scenarios.prepare.common import SPLIT_ORDER, Context, Layout

SHOWN = 3  # example files printed per drop reason (the manifest lists them all)


def make_manifest(dataset: str, source: Path, layout: Layout, written: list, missing: list,
                  ctx: Context, fingerprint: str, points_sha: dict) -> dict:
    dropped = sorted((d.as_dict() for d in layout.dropped), key=lambda d: (d["reason"], d["file"]))
    present = {w.split for w in written}
    splits = [s for s in dict.fromkeys((*layout.splits, *SPLIT_ORDER, *sorted(present))) if s in present]
    return {
        "dataset": dataset,
        "source": str(source.resolve()),
        "options": ctx.options.recorded(),
        "splits": {s: sum(w.split == s for w in written) for s in splits},
        "dropped_counts": dict(sorted(Counter(d["reason"] for d in dropped).items())),
        "dropped": dropped,
        "missing_from_source": missing,
        "grey_masks": sum(w.grey for w in written),
        "resized_masks": sum(w.resized for w in written),
        "points": {"reference": sum(w.from_reference for w in written),
                   "generated": sum(not w.from_reference and w.points is not None for w in written),
                   "none_empty_at_1024": sum(w.points is None for w in written)},
        **layout.extra,
        "fingerprint": fingerprint,
        "points_sha256": points_sha,
    }


def format_summary(summary: dict) -> str:
    """The lines printed at the end of a prepare run."""
    lines = [f"prepare {summary['dataset']}: {summary['source']} -> {summary['out']} ({summary['status']})",
             "  splits: " + ", ".join(f"{s} {n}" for s, n in summary["splits"].items()),
             f"  dropped: {len(summary['dropped'])}"]
    for reason, count in summary["dropped_counts"].items():
        files = [d for d in summary["dropped"] if d["reason"] == reason]
        lines.append(f"    {reason}: {count}")
        for d in files[:SHOWN]:
            lines.append(f"      {d['file']}" + (f" ({d['detail']})" if d.get("detail") else ""))
        if count > SHOWN:
            lines.append(f"      ... {count - SHOWN} more (see manifest.json)")
    if summary["missing_from_source"]:
        missing = summary["missing_from_source"]
        lines.append(f"  listed but not in the source: {len(missing)} ({', '.join(missing[:SHOWN])}"
                     + (", ..." if len(missing) > SHOWN else "") + ")")
    points = summary["points"]
    lines += [f"  masks with grey values (not 0/255, binarised): {summary['grey_masks']}",
              f"  masks resized to their image (--resize-masks): {summary['resized_masks']}",
              f"  points: {points['reference']} from the reference, {points['generated']} generated"
              + (f", {points['none_empty_at_1024']} none (mask empty at 1024 px)"
                 if points["none_empty_at_1024"] else "")]
    if "coco_instance_rule" in summary:
        lines.append(f"  COCO instance rule: {summary['coco_instance_rule']} (chosen by: "
                     + ", ".join(f"{k} {v}" for k, v in summary["coco_instance_counts"].items()) + ")")
    lines.append(f"  fingerprint: {summary['fingerprint']}")
    return "\n".join(lines)
