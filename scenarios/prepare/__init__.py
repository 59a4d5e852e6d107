"""``prepare``: an official dataset download, exactly as it comes, -> the folder format.

OUT becomes ``OUT/<split>/{images,masks}/`` plus ``masks/points.json`` per split and
``OUT/manifest.json`` (counts, dropped files with reasons, the fingerprint). Images are copied byte
for byte; masks become single-channel 0/255 PNGs named ``<image stem>.png``.

:data:`DATASETS` maps each dataset name to the module that knows its layout (``collect(source,
ctx) -> Layout``); the machinery they share is in :mod:`.common` (layout records, pairing),
:mod:`.lists` (split lists and reference points), :mod:`.build` (decode, check, write, move into
place) and :mod:`.summary` (manifest, printed summary). Kvasir-SEG and COCO have no official
split of the reference's kind: the reference's name lists ship in ``splits/<dataset>.json``.
"""
from __future__ import annotations

import importlib
import shutil
from pathlib import Path

from scenarios.fileio import atomic_write_text
from scenarios.prepare.common import Context, Drop, Options

DATASETS = {"kvasir-seg": "kvasir", "camo": "camo", "istd": "istd", "isic2016": "isic",
            "isic2017": "isic", "cod10k": "cod10k", "coco": "coco"}


def _context(dataset: str, options: Options) -> Context:
    from scenarios.prepare.lists import read_reference_points, read_split_lists, shipped_split_lists

    lists = (read_split_lists(options.split_from) if options.split_from
             else shipped_split_lists(dataset))
    points = (read_reference_points(options.points_from, options.num_points)
              if options.points_from else {})
    return Context(dataset, options, points, lists)


def prepare(dataset: str, source, out, **options) -> dict:
    """Convert `source` (the unpacked download) into `out`; returns the summary (the manifest plus
    `out` and `status`: written | unchanged | replaced). `options`: the fields of Options."""
    import json

    from scenarios.prepare import build
    from scenarios.prepare.summary import make_manifest

    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r} (one of {', '.join(DATASETS)})")
    opts = Options(**options)
    opts.check()
    source, out = Path(source), Path(out)
    module = importlib.import_module(f"scenarios.prepare.{DATASETS[dataset]}")
    ctx = _context(dataset, opts)
    if getattr(module, "NEEDS_SPLIT_LIST", False) and ctx.split_lists is None:
        raise ValueError(f"{dataset}: no official split; pass --split-from (a folder holding the "
                         f"reference's <split>/points.json, or a JSON {{\"train\": [...], \"test\": [...]}})")
    build.check_out(out, opts.overwrite, source)
    layout = module.collect(source, ctx)
    missing = build.assign_splits(layout, ctx.split_lists)
    if not layout.pairs:
        example = f" (e.g. {layout.dropped[0].file}: {layout.dropped[0].reason})" if layout.dropped else ""
        raise ValueError(f"{dataset}: no image/mask pairs found under {source}; "
                         f"{len(layout.dropped)} file(s) dropped{example}")
    tmp = build.temp_folder(out)
    try:
        results = build.process_all(layout, tmp, ctx, f"prepare {dataset}")
        written = [r for r in results if not isinstance(r, Drop)]
        layout.dropped += [r for r in results if isinstance(r, Drop)]
        if not written:
            first = layout.dropped[-1]
            raise ValueError(f"{dataset}: every image of {source} was dropped (e.g. {first.file}: "
                             f"{first.reason}{', ' + first.detail if first.detail else ''})")
        for split in {p.split for p in layout.pairs} - {w.split for w in written}:
            shutil.rmtree(tmp / split)  # every pair of this split was dropped
        points_sha = build.write_points(tmp, written)
        manifest = make_manifest(dataset, source, layout, written, missing, ctx,
                                 build.folder_fingerprint(tmp, list(points_sha)), points_sha)
        atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=1) + "\n")
        status = build.place(tmp, out, manifest, opts.overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**manifest, "out": str(out), "status": status}
